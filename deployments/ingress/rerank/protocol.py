"""Request and response bodies of POST /v1/rerank (Cohere/Jina/vLLM style).

``relevance_score`` is the reranker's score mapped to 0..1 (thresholds mean the
same for every query); ``raw_score`` is the model's own score.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.ingress.validation import Text


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: Text


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Text | None = None
    query: Text
    documents: list[Text | TextDocument]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True

    @property
    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    raw_score: float
    document: TextDocument | None = None


class RerankUsage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    object: Literal["rerank"] = "rerank"
    model: str
    results: list[RerankResult]
    usage: RerankUsage
