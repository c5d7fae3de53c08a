"""Request and response bodies of the TEI face (Hugging Face text-embeddings-inference's
HTTP API): GET /info, POST /embed, POST /rerank, POST /tokenize."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.ingress.validation import Text

TEI_EMBEDDER = "/tei/embedder"
TEI_RERANKER = "/tei/reranker"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Info(BaseModel):
    """As TEI's GET /info: ``model_type`` is an object keyed ``embedding`` or
    ``reranker``. Lengths are in characters (the limit this server enforces)."""

    model_id: str
    model_sha: str | None = None
    model_dtype: str = "float32"
    model_type: dict[str, dict[str, Any]]
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None = None
    max_client_batch_size: int
    auto_truncate: bool = False
    tokenization_workers: int = 1
    version: str
    sha: str | None = None
    docker_label: str | None = None


class EmbedRequest(_Lenient):
    inputs: Text | list[Text]
    normalize: bool = Field(True, description="Vectors are unit length either way.")
    truncate: bool = Field(False, description="Cut texts over the limit instead of refusing.")
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    prompt_name: str | None = Field(
        None, description="'query' embeds the inputs as queries; otherwise as passages."
    )

    @property
    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class RerankRequest(_Lenient):
    query: Text
    texts: list[Text]
    raw_scores: bool = Field(
        False, description="The model's own scores instead of the 0..1 relevance."
    )
    return_text: bool = False
    truncate: bool = False
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


class TokenizeRequest(_Lenient):
    inputs: Text | list[Text]
    add_special_tokens: bool = True

    @property
    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class Token(BaseModel):
    id: int
    text: str
    special: bool = False
    start: int | None
    stop: int | None
