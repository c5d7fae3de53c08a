"""Request and response bodies of POST /v1/embeddings (OpenAI-compatible).

Extension: ``input_type`` ("passage", the default, or "query") selects the
embedding side for models with asymmetric prefixes (ruri, e5) and for the
built-in embedder, whose query and passage weights differ.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.ingress.validation import Text


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Text | None = None
    input: Text | list[Text] = Field(
        description="One text or a list of texts (token ids are not accepted)."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    input_type: Literal["query", "passage"] = "passage"
    user: Text | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
