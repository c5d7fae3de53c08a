"""Request and response bodies of POST /v1/chat/completions (OpenAI-compatible).

Extensions to OpenAI's schema: ``rag`` in the request (retrieval options);
``sources`` in the response and in the last stream chunk (the passages the
answer was generated from, numbered as its citation markers [1], [2], ...);
``degraded`` and ``notice`` next to them when a stage could not take part (the
reranker: passages in the retriever's order; the generator: no answer text).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.ingress.validation import Text
from deployments.passage import Hit, MetadataValue
from deployments.retriever.search_parameters import SearchParameters


class _Lenient(BaseModel):
    """Request bodies accept (and ignore) OpenAI fields this server does not use."""

    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: Text


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Lenient):
    include_usage: bool = False


class RagOptions(BaseModel):
    """Retrieval settings for one request (extension field ``rag``)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(None, ge=1, le=1000, description="Candidates retrieved.")
    top_n: int | None = Field(None, ge=1, le=100, description="Passages given to the generator.")
    knowledge_base: str | None = Field(
        None,
        description="Knowledge base to answer from (default: the model id's, 'ja-rag/<name>', "
        "or the first one).",
    )
    nprobe: int | None = Field(
        None, ge=1, le=65536, description="IVF indexes: inverted lists probed (recall vs speed)."
    )
    ef_search: int | None = Field(
        None, ge=1, le=65536, description="HNSW indexes: candidates kept while searching."
    )

    @property
    def search(self) -> SearchParameters | None:
        """The FAISS settings the request asks for, if any."""
        return SearchParameters.given(self.nprobe, self.ef_search)


class ChatCompletionRequest(_Lenient):
    model: Text | None = Field(None, description="'ja-rag' (default) or the generator's model id.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="Only one choice is generated.")
    stop: Text | list[Text] | None = None
    seed: int | None = None
    user: Text | None = None
    rag: RagOptions | None = None

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def asks_retrieval(self, rag_model: str) -> bool:
        """Whether the model asked for is the RAG model or one of its knowledge bases'
        (``<rag_model>/<knowledge base>``); absent means the RAG model."""
        model = self.model or rag_model
        return model == rag_model or model.startswith(f"{rag_model}/")

    def knowledge_base(self, rag_model: str) -> str | None:
        """The knowledge base named by the model id or ``rag.knowledge_base`` (None: the
        default one); ValueError when the two name different ones."""
        from_model = None
        if self.model and self.model.startswith(f"{rag_model}/"):
            from_model = self.model[len(rag_model) + 1 :]
        from_rag = self.rag.knowledge_base if self.rag else None
        if from_model and from_rag and from_model != from_rag:
            raise ValueError(
                f"model {self.model!r} and rag.knowledge_base {from_rag!r} name different "
                "knowledge bases"
            )
        return from_model or from_rag

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class Source(BaseModel):
    """A passage the answer was generated from; ``index`` is its citation number."""

    index: int
    passage_id: str
    doc_id: str
    title: str
    url: str | None
    text: str
    score: float = Field(description="First-stage similarity (cosine).")
    rerank_score: float | None = Field(description="Raw reranker score; higher is better.")
    relevance: float | None = Field(description="Reranker score mapped to 0..1.")
    cited: bool = Field(description="Whether the answer cites it as [index].")
    metadata: dict[str, MetadataValue] = Field(
        default_factory=dict,
        description="The source document's other fields from the corpus (source file, "
        "pageid, section, dates, ...); empty when the index has none.",
    )

    @classmethod
    def from_hit(cls, index: int, hit: Hit, answer: str) -> Source:
        p = hit.passage
        return cls(
            index=index,
            passage_id=p.id,
            doc_id=p.doc_id,
            title=p.title,
            url=p.url,
            text=p.text,
            score=hit.score,
            rerank_score=hit.rerank_score,
            relevance=hit.relevance,
            cited=f"[{index}]" in answer,
            metadata=p.metadata,
        )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None


Degradable = Literal["reranker", "generator"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    sources: list[Source] = Field(default_factory=list)
    degraded: list[Degradable] = Field(
        default_factory=list,
        description="Stages left out of this answer: 'reranker' (passages in retrieval order) "
        "or 'generator' (no answer text; the sources are still given).",
    )
    notice: str | None = Field(None, description="Why, when 'degraded' is not empty.")


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    sources: list[Source] | None = None
    degraded: list[Degradable] | None = None
    notice: str | None = None

    def sse(self) -> str:
        """This chunk as one server-sent event; absent optional fields are left out."""
        optional = {"usage", "sources", "degraded", "notice"}
        body = self.model_dump(exclude=optional)
        for choice in body["choices"]:
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        body.update(self.model_dump(include=optional, exclude_none=True))
        return sse_event(body)


class ContentEvents:
    """The content events of one stream, each the same bytes as
    ``ChatCompletionChunk(..., choices=[ChunkChoice(delta=Delta(content=text))]).sse()``:
    the chunk around the text is written once per stream, only the text per event
    (the event is written for every piece of every answer)."""

    __slots__ = ("_after", "_before")

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        marker = uuid.uuid4().hex
        event = ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=model,
            choices=[ChunkChoice(delta=Delta(content=marker))],
        ).sse()
        # The marker is the content, which follows id and model: the last occurrence.
        self._before, _, self._after = event.rpartition(json.dumps(marker))

    def event(self, text: str) -> str:
        return f"{self._before}{json.dumps(text, ensure_ascii=False)}{self._after}"


def sse_event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"
