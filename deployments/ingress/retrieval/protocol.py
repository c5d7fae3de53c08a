"""Request and response bodies of Dify's External Knowledge API (POST /retrieval).

Dify sends ``{knowledge_id, query, retrieval_setting: {top_k, score_threshold},
metadata_condition?}`` and reads ``{records: [{content, score, title, metadata}]}``.
``retrieval_setting`` may also carry this server's ``nprobe`` / ``ef_search`` (the
FAISS search settings of the request), which Dify itself never sends.
``score`` is the reranker's relevance (0..1), so ``score_threshold`` means what it
means in Dify. Errors are ``{error_code, error_msg}``: Dify's 1001 (malformed
Authorization header), 1002 (authorization failed) and 2001 (no such knowledge base);
other errors carry their HTTP status as ``error_code`` (400, 413, 503, 504).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.ingress.validation import Text
from deployments.passage import Hit, MetadataValue
from deployments.retriever.filters import Condition, MetadataFilter
from deployments.retriever.search_parameters import SearchParameters


class _Lenient(BaseModel):
    """Fields Dify may add later are ignored."""

    model_config = ConfigDict(extra="ignore")


class RetrievalSetting(_Lenient):
    top_k: int = Field(ge=1, le=1000, description="Most records returned.")
    score_threshold: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Least relevance (0..1, the reranker's) of a record; 0 when Dify's "
        "threshold is off.",
    )
    nprobe: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="IVF indexes: inverted lists probed (recall vs speed); default: the "
        "retriever's search_parameters. Not sent by Dify.",
    )
    ef_search: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="HNSW indexes: candidates kept while searching; default: the retriever's "
        "search_parameters. Not sent by Dify.",
    )

    @property
    def search(self) -> SearchParameters | None:
        """The FAISS settings the request asks for, if any."""
        return SearchParameters.given(self.nprobe, self.ef_search)


class DifyCondition(_Lenient):
    name: str | list[str] = Field(description="Metadata field, or several (any may match).")
    comparison_operator: str
    value: str | int | float | list[str] | None = None


class MetadataCondition(_Lenient):
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[DifyCondition] | None = None

    def to_filter(self) -> MetadataFilter | None:
        """The retriever's filter; None when no condition is given. Raises
        InvalidFilter for a condition that cannot be evaluated."""
        if not self.conditions:
            return None
        return MetadataFilter(
            tuple(
                Condition.create(c.name, c.comparison_operator, c.value) for c in self.conditions
            ),
            self.logical_operator,
        )


class RetrievalRequest(_Lenient):
    knowledge_id: Text = Field(description="The knowledge base's name.")
    query: Text
    retrieval_setting: RetrievalSetting
    metadata_condition: MetadataCondition | None = None


class Record(BaseModel):
    content: str
    score: float = Field(description="The reranker's relevance, 0..1.")
    title: str
    metadata: dict[str, MetadataValue] = Field(
        description="The corpus fields of the passage's document, with its passage_id, "
        "doc_id, url and first-stage score; always an object."
    )

    @classmethod
    def from_hit(cls, hit: Hit, knowledge_base: str) -> Record:
        p = hit.passage
        metadata: dict[str, MetadataValue] = {
            **p.metadata,
            "knowledge_base": knowledge_base,
            "passage_id": p.id,
            "doc_id": p.doc_id,
            "retrieval_score": hit.score,
        }
        if p.url:
            metadata["url"] = p.url
        if hit.rerank_score is not None:
            metadata["rerank_score"] = hit.rerank_score
        return cls(
            content=p.text,
            score=float(hit.relevance if hit.relevance is not None else 0.0),
            title=p.title,
            metadata=metadata,
        )


class RetrievalResponse(BaseModel):
    records: list[Record]
