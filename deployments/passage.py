"""The unit of retrieval, shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

MetadataValue: TypeAlias = str | int | float | bool | None
Metadata: TypeAlias = dict[str, MetadataValue]
"""Fields of a passage's source document beyond its id, title, text and url
(``source`` file, ``pageid``, ``section``, dates, ...): a flat JSON object."""


@dataclass(frozen=True, slots=True)
class Passage:
    """A chunk of a source document, as stored in the index."""

    id: str
    """Unique id of this chunk (``<doc_id>`` or ``<doc_id>#<n>`` when split)."""
    doc_id: str
    """Id of the source document; every chunk of one document shares it."""
    title: str
    text: str
    url: str | None = None
    metadata: Metadata = field(default_factory=dict, hash=False)
    """The source document's other fields; every chunk of one document shares them."""

    @property
    def document_text(self) -> str:
        """The text embedded and reranked: title and body, as in index building."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as constructor arguments: several times faster than a slotted
        # dataclass's default, and ~50 passages cross between deployments per request.
        return (Passage, (self.id, self.doc_id, self.title, self.text, self.url, self.metadata))


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage found for a query, with the scores of each stage that saw it."""

    passage: Passage
    score: float
    """First-stage similarity (inner product of normalised vectors)."""
    rerank_score: float | None = None
    """Raw reranker score; higher is more relevant."""
    relevance: float | None = None
    """Reranker score mapped to 0..1."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Hit, (self.passage, self.score, self.rerank_score, self.relevance))
