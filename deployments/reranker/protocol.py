"""What every reranker engine provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from deployments.passage import Hit


class RerankerEngine(Protocol):
    """Scores how well each document answers a query.

    ``score`` returns raw scores (higher is better, scale specific to the model);
    ``relevance`` maps raw scores to 0..1 so that clients can set thresholds.
    """

    @property
    def model_name(self) -> str: ...

    def score(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]: ...

    def relevance(self, raw_scores: NDArray[np.float32]) -> NDArray[np.float32]: ...


@runtime_checkable
class PairScorer(Protocol):
    """An engine that scores many (query, document) pairs in one call, so that a
    replica can put several concurrent requests through one forward pass."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> NDArray[np.float32]: ...


@dataclass(frozen=True, slots=True)
class Ranking:
    """The best documents for a query, best first: their positions in the list scored,
    and their scores. What the Reranker deployment answers: the caller keeps the
    passages, so that only texts go to the reranker and only this comes back."""

    positions: NDArray[np.int64]
    raw: NDArray[np.float32]
    relevance: NDArray[np.float32]

    def apply(self, hits: Sequence[Hit]) -> list[Hit]:
        """The ranked ``hits`` (the list whose texts were scored), scores attached."""
        return [
            Hit(hits[i].passage, hits[i].score, float(raw), float(relevance))
            for i, raw, relevance in zip(
                self.positions.tolist(), self.raw.tolist(), self.relevance.tolist(), strict=True
            )
        ]


@dataclass(frozen=True, slots=True)
class RerankScores:
    raw: NDArray[np.float32]
    """The model's own scores; higher is more relevant."""
    relevance: NDArray[np.float32]
    """The same mapped to 0..1."""

    def ranking(self, top_n: int | None = None) -> Ranking:
        """The ``top_n`` best (all without it), best first; ties keep the input order."""
        order = np.argsort(-self.raw, kind="stable")[:top_n]
        return Ranking(order, self.raw[order], self.relevance[order])


def rank_hits(hits: Sequence[Hit], scores: RerankScores, top_n: int | None = None) -> list[Hit]:
    """``hits`` best first by reranker score (ties keep retrieval order), scores attached."""
    return scores.ranking(top_n).apply(hits)
