"""The Reranker deployment: rescoring with concurrent requests batched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deployments.batching import Batcher, with_batching
from deployments.health import probe
from deployments.metrics import StageMetrics
from deployments.placement import replica_placement
from deployments.reranker.config import RerankerConfig
from deployments.reranker.factory import create_reranker
from deployments.reranker.protocol import PairScorer, Ranking, RerankerEngine, RerankScores


@dataclass(frozen=True, slots=True)
class _ScoreCall:
    query: str
    documents: list[str]


def _documents_in(calls: list[_ScoreCall]) -> int:
    return sum(max(len(c.documents), 1) for c in calls)


class Reranker:
    """Scores (query, document) pairs for the chain and for /v1/rerank."""

    def __init__(
        self,
        config: RerankerConfig,
        index_dir: str,
        engine_cls: Callable[[RerankerConfig, Path], RerankerEngine] | None = None,
    ) -> None:
        self.config = config
        self.engine: RerankerEngine = (engine_cls or create_reranker)(config, Path(index_dir))
        self.metrics = StageMetrics("rerank")
        self._batcher = Batcher(self._score_all, config, size_of=_documents_in)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batching settings from the deployment's ``user_config``, applied live."""
        self.config = with_batching(self.config, user_config)
        self._batcher.configure(self.config)

    async def rerank(self, query: str, documents: list[str], top_n: int) -> Ranking:
        """The ``top_n`` documents that answer ``query`` best, best first (positions in
        ``documents`` with their scores). The caller keeps its passages and sends only
        their texts: a list of strings costs less to send and to unpickle than hits."""
        with self.metrics.call():
            scores = await self._score_documents(query, documents)
        self._record_top(scores)
        return scores.ranking(top_n)

    async def score(self, query: str, documents: list[str]) -> RerankScores:
        """Scores of each document for ``query``, in input order."""
        with self.metrics.call():
            scores = await self._score_documents(query, documents)
        self._record_top(scores)
        return scores

    def _record_top(self, scores: RerankScores) -> None:
        if len(scores.relevance):
            self.metrics.top_score(float(np.max(scores.relevance)))

    async def _score_documents(self, query: str, documents: list[str]) -> RerankScores:
        if not documents:
            empty = np.zeros(0, dtype=np.float32)
            return RerankScores(empty, empty)
        size = self.config.max_batch_size
        parts = await asyncio.gather(
            *(
                self._batcher.submit(_ScoreCall(query, documents[i : i + size]))
                for i in range(0, len(documents), size)
            )
        )
        return RerankScores(
            np.concatenate([p.raw for p in parts]), np.concatenate([p.relevance for p in parts])
        )

    def _score_all(self, calls: list[_ScoreCall]) -> list[RerankScores]:
        """One engine call for every pair of the batch where the engine allows it."""
        if isinstance(self.engine, PairScorer):
            pairs = [(c.query, d) for c in calls for d in c.documents]
            raw_all = self.engine.score_pairs(pairs)
            relevance_all = self.engine.relevance(raw_all)
            results, start = [], 0
            for call in calls:
                end = start + len(call.documents)
                results.append(RerankScores(raw_all[start:end], relevance_all[start:end]))
                start = end
            return results
        results = []
        for call in calls:
            raw = self.engine.score(call.query, call.documents)
            results.append(RerankScores(raw, self.engine.relevance(raw)))
        return results

    async def describe(self) -> dict[str, Any]:
        return {"model": self.engine.model_name, "placement": replica_placement()}

    async def check_health(self) -> None:
        """Scores a probe pair with the engine, off the event loop, within a time limit."""
        raw = await probe(
            "reranker", asyncio.to_thread(self.engine.score, "健康", ["健康状態の確認"])
        )
        if raw.shape != (1,) or not np.isfinite(raw).all():
            raise RuntimeError(f"reranker returned bad scores {raw!r}")
