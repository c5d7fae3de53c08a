"""The Embedder deployment: a thin Ray Serve wrapper with dynamic batching."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from deployments.batching import Batcher, with_batching
from deployments.embedder.config import EmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.embedder.protocol import EmbedderEngine
from deployments.health import probe
from deployments.index.format import check_embedder, read_manifest
from deployments.metrics import StageMetrics
from deployments.placement import replica_placement

TextKind = Literal["query", "passage"]


@dataclass(frozen=True, slots=True)
class _EmbedCall:
    texts: list[str]
    kind: TextKind


def _texts_in(calls: list[_EmbedCall]) -> int:
    return sum(len(c.texts) for c in calls)


class Embedder:
    """Embeds queries for retrieval and texts for the /v1/embeddings endpoint."""

    def __init__(
        self,
        config: EmbedderConfig,
        index_dir: str,
        engine_cls: Callable[[EmbedderConfig, Path], EmbedderEngine] | None = None,
    ) -> None:
        self.config = config
        self.engine: EmbedderEngine = (engine_cls or create_embedder)(config, Path(index_dir))
        self.metrics = StageMetrics("embed")
        manifest = read_manifest(Path(index_dir), verify=False)
        check_embedder(manifest, self.engine.identity, Path(index_dir))
        self._batcher = Batcher(self._embed_grouped, config, size_of=_texts_in)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batching settings from the deployment's ``user_config``, applied live."""
        self.config = with_batching(self.config, user_config)
        self._batcher.configure(self.config)

    async def embed_query(self, text: str) -> NDArray[np.float32]:
        """One query vector; concurrent calls are embedded together."""
        with self.metrics.call():
            vectors = await self._batcher.submit(_EmbedCall([text], "query"))
            return np.asarray(vectors[0], dtype=np.float32)

    async def embed(self, texts: list[str], kind: TextKind) -> NDArray[np.float32]:
        """Vectors for several texts of one kind, batched in slices of ``max_batch_size``."""
        with self.metrics.call():
            if not texts:
                return np.zeros((0, self.engine.identity.dimension), dtype=np.float32)
            size = self.config.max_batch_size
            parts = await asyncio.gather(
                *(
                    self._batcher.submit(_EmbedCall(texts[i : i + size], kind))
                    for i in range(0, len(texts), size)
                )
            )
            return np.concatenate(parts)

    def _embed_grouped(self, calls: list[_EmbedCall]) -> list[NDArray[np.float32]]:
        """One engine call per kind; results split back per call."""
        results: list[NDArray[np.float32] | None] = [None] * len(calls)
        for kind in ("query", "passage"):
            members = [i for i, c in enumerate(calls) if c.kind == kind]
            if not members:
                continue
            texts = [t for i in members for t in calls[i].texts]
            embed = self.engine.embed_queries if kind == "query" else self.engine.embed_passages
            vectors = embed(texts)
            start = 0
            for i in members:
                count = len(calls[i].texts)
                results[i] = vectors[start : start + count]
                start += count
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    async def describe(self) -> dict[str, Any]:
        return {
            "model": self.engine.identity.model,
            "identity": self.engine.identity.model_dump(),
            "placement": replica_placement(),
        }

    async def check_health(self) -> None:
        """Embeds a probe query with the engine, off the event loop, within a time limit."""
        vector = await probe(
            "embedder", asyncio.to_thread(self.engine.embed_queries, ["健康状態の確認"])
        )
        if vector.shape != (1, self.engine.identity.dimension) or not np.isfinite(vector).all():
            raise RuntimeError(f"embedder returned a bad vector of shape {vector.shape}")
        if not np.isclose(np.linalg.norm(vector), 1.0, atol=1e-3):
            raise RuntimeError("embedder returned a vector that is not of unit length")
