"""The Retriever deployment: FAISS search with concurrent queries batched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deployments.batching import Batcher, with_batching
from deployments.health import probe
from deployments.metrics import StageMetrics
from deployments.passage import Hit
from deployments.placement import replica_placement
from deployments.retriever.config import IndexConfig, RetrieverConfig
from deployments.retriever.factory import create_retriever
from deployments.retriever.protocol import RetrieverEngine


@dataclass(frozen=True, slots=True)
class _SearchCall:
    vector: NDArray[np.float32]
    top_k: int


class Retriever:
    """Searches one index version; refuses an index built by another embedder."""

    def __init__(
        self,
        config: RetrieverConfig,
        index: IndexConfig,
        index_dir: str,
        engine_cls: Callable[[RetrieverConfig, IndexConfig, Path], RetrieverEngine] | None = None,
    ) -> None:
        self.config = config
        self.engine: RetrieverEngine = (engine_cls or create_retriever)(
            config, index, Path(index_dir)
        )
        self.metrics = StageMetrics("retrieve")
        self._batcher = Batcher(self._search_all, config)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batching settings from the deployment's ``user_config``, applied live."""
        self.config = with_batching(self.config, user_config)
        self._batcher.configure(self.config)

    async def search(self, vector: NDArray[np.float32], top_k: int) -> list[Hit]:
        """The ``top_k`` passages nearest one query vector; concurrent searches share a
        FAISS call."""
        with self.metrics.call():
            hits = await self._batcher.submit(_SearchCall(vector, top_k))
        self.metrics.candidates(len(hits))
        return hits

    def _search_all(self, calls: list[_SearchCall]) -> list[list[Hit]]:
        """One FAISS call for the batch, at the largest ``top_k`` asked."""
        k = max(c.top_k for c in calls)
        results = self.engine.search(np.stack([c.vector for c in calls]), k)
        return [hits[: c.top_k] for hits, c in zip(results, calls, strict=True)]

    async def describe(self) -> dict[str, Any]:
        m = self.engine.manifest
        return {
            "index": str(self.engine.version_dir),
            "version": m.version,
            "passages": m.num_passages,
            "documents": m.num_documents,
            "faiss_factory": m.faiss_factory,
            "embedder": m.embedder.model,
            "placement": replica_placement(),
        }

    async def check_health(self) -> None:
        """Searches the index for a probe vector, reading the passage found, off the
        event loop, within a time limit."""
        vector = np.zeros((1, self.engine.dimension), dtype=np.float32)
        vector[0, 0] = 1.0

        def search_and_read() -> None:
            hits = self.engine.search(vector, 1)[0]
            if self.engine.manifest.num_passages and (not hits or not hits[0].passage.id):
                raise RuntimeError("retriever found no readable passage for a probe vector")

        await probe("retriever", asyncio.to_thread(search_and_read))
