"""The Retriever deployment: FAISS search with concurrent queries batched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from ray import serve

from deployments.batching import BatchGate, with_batching
from deployments.health import probe
from deployments.metrics import StageMetrics
from deployments.passage import Hit
from deployments.placement import replica_placement
from deployments.retriever.config import IndexConfig, RetrieverConfig
from deployments.retriever.faiss_search import FaissRetriever


class Retriever:
    """Searches one index version; refuses an index built by another embedder."""

    def __init__(
        self,
        config: RetrieverConfig,
        index: IndexConfig,
        index_dir: str,
    ) -> None:
        self.config = config
        self.engine = FaissRetriever(
            Path(index_dir), config, verify_checksums=index.verify_checksums
        )
        self._gate = BatchGate()
        self.metrics = StageMetrics("retrieve")
        self._apply_batching()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batching settings from the deployment's ``user_config``, applied live."""
        self.config = with_batching(self.config, user_config)
        self._apply_batching()

    def _apply_batching(self) -> None:
        batch = self.config.max_batch_size if self.config.batching else 1
        self._search_batch.set_max_batch_size(batch)
        self._search_batch.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)
        self._gate.batch_wait_timeout_s = self.config.batch_wait_timeout_s

    async def search(self, vector: NDArray[np.float32], top_k: int | None = None) -> list[Hit]:
        """The passages nearest one query vector; concurrent searches share a FAISS call."""
        k = top_k or self.engine.config.top_k
        with self.metrics.call():
            hits: list[Hit] = await self._gate.submit(
                lambda: self.engine.search(vector[None, :], k)[0],
                lambda: self._search_batch(vector, k),
            )
        self.metrics.candidates(len(hits))
        return hits

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _search_batch(
        self, vectors: list[NDArray[np.float32]], top_ks: list[int]
    ) -> list[list[Hit]]:
        k = max(top_ks)
        with self._gate.running():
            results = await asyncio.to_thread(self.engine.search, np.stack(vectors), k)
        return [hits[:top_k] for hits, top_k in zip(results, top_ks, strict=True)]

    def describe(self) -> dict[str, Any]:
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
        """Searches the index for a probe vector (reading the passages found) and reads
        the first passage, off the event loop, within a time limit."""
        vector = np.zeros((1, self.engine.dimension), dtype=np.float32)
        vector[0, 0] = 1.0

        def search_and_read() -> None:
            self.engine.search(vector, 1)
            if len(self.engine.passages) and not self.engine.passages[0].id:
                raise RuntimeError("retriever read a passage without an id")

        await probe("retriever", asyncio.to_thread(search_and_read))
