"""How the HTTP API reaches the stages: Ray Serve handles, or engines in-process.

The routes depend only on :class:`StageClient`. In the graph it is
:class:`GraphStages` (DeploymentHandles); :class:`LocalStages` runs the same
engines inside the API process, which is how the single-process baseline of
the benchmarks and the HTTP-layer unit tests run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from deployments.embedder.protocol import EmbedderEngine
from deployments.generator.protocol import GeneratedText, GenerationRequest, GeneratorEngine
from deployments.passage import Hit
from deployments.reranker.protocol import RerankerEngine, RerankScores, rank_hits
from deployments.retriever.faiss_search import FaissRetriever

TextKind = Literal["query", "passage"]
STAGES = ("embedder", "retriever", "reranker", "generator")


@dataclass(frozen=True, slots=True)
class StageStatus:
    healthy: bool
    latency_ms: float
    details: dict[str, Any]
    error: str | None = None


class StageClient(Protocol):
    async def retrieve(self, query: str, top_k: int | None) -> list[Hit]: ...

    async def rerank(self, query: str, hits: list[Hit], top_n: int | None) -> list[Hit]: ...

    async def score(self, query: str, documents: list[str]) -> RerankScores: ...

    async def embed(self, texts: list[str], kind: TextKind) -> NDArray[np.float32]: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]: ...

    async def describe(self, stage: str) -> dict[str, Any]: ...


async def check_stages(client: StageClient, timeout_s: float) -> dict[str, StageStatus]:
    """Ask every stage to describe itself, concurrently, each within ``timeout_s``."""

    async def one(stage: str) -> StageStatus:
        start = time.perf_counter()
        try:
            details = await asyncio.wait_for(client.describe(stage), timeout_s)
        except Exception as error:  # a stage that is down must not take /healthz down
            elapsed = (time.perf_counter() - start) * 1000
            reason = (
                "timed out"
                if isinstance(error, TimeoutError)
                else f"{type(error).__name__}: {error}"
            )
            return StageStatus(False, elapsed, {}, reason)
        return StageStatus(True, (time.perf_counter() - start) * 1000, details)

    statuses = await asyncio.gather(*(one(stage) for stage in STAGES))
    return dict(zip(STAGES, statuses, strict=True))


class GraphStages:
    """The stages as Ray Serve deployments, reached through DeploymentHandles."""

    def __init__(self, embedder: Any, retriever: Any, reranker: Any, generator: Any) -> None:
        self._handles = {
            "embedder": embedder,
            "retriever": retriever,
            "reranker": reranker,
            "generator": generator,
        }
        self._stream = generator.options(stream=True)

    async def retrieve(self, query: str, top_k: int | None) -> list[Hit]:
        # The embedder's response is handed to the retriever unresolved: Serve
        # passes the vector from replica to replica without a trip through here.
        vector = self._handles["embedder"].embed_query.remote(query)
        hits: list[Hit] = await self._handles["retriever"].search.remote(vector, top_k)
        return hits

    async def rerank(self, query: str, hits: list[Hit], top_n: int | None) -> list[Hit]:
        reranked: list[Hit] = await self._handles["reranker"].rerank.remote(query, hits, top_n)
        return reranked

    async def score(self, query: str, documents: list[str]) -> RerankScores:
        scores: RerankScores = await self._handles["reranker"].score.remote(query, documents)
        return scores

    async def embed(self, texts: list[str], kind: TextKind) -> NDArray[np.float32]:
        vectors: NDArray[np.float32] = await self._handles["embedder"].embed.remote(texts, kind)
        return vectors

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        stream = self._stream.generate.remote(request)
        try:
            async for piece in stream:
                yield piece
        finally:
            # Stops the replica's generation when the client goes away early.
            stream.cancel()

    async def describe(self, stage: str) -> dict[str, Any]:
        details: dict[str, Any] = await self._handles[stage].describe.remote()
        return details


class LocalStages:
    """The same engines called inside this process (no Ray)."""

    def __init__(
        self,
        embedder: EmbedderEngine,
        retriever: FaissRetriever,
        reranker: RerankerEngine,
        generator: GeneratorEngine,
        top_n: int,
    ) -> None:
        self.embedder = embedder
        self.retriever = retriever
        self.reranker = reranker
        self.generator = generator
        self.top_n = top_n

    async def retrieve(self, query: str, top_k: int | None) -> list[Hit]:
        vectors = await asyncio.to_thread(self.embedder.embed_queries, [query])
        return (await asyncio.to_thread(self.retriever.search, vectors, top_k))[0]

    async def rerank(self, query: str, hits: list[Hit], top_n: int | None) -> list[Hit]:
        scores = await self.score(query, [h.passage.document_text for h in hits])
        return rank_hits(hits, scores, top_n or self.top_n)

    async def score(self, query: str, documents: list[str]) -> RerankScores:
        raw = await asyncio.to_thread(self.reranker.score, query, documents)
        return RerankScores(raw, self.reranker.relevance(raw))

    async def embed(self, texts: list[str], kind: TextKind) -> NDArray[np.float32]:
        embed = self.embedder.embed_queries if kind == "query" else self.embedder.embed_passages
        return await asyncio.to_thread(embed, texts)

    def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        return self.generator.generate(request)

    async def describe(self, stage: str) -> dict[str, Any]:
        if stage == "embedder":
            return {"model": self.embedder.identity.model}
        if stage == "retriever":
            m = self.retriever.manifest
            return {"version": m.version, "passages": m.num_passages, "embedder": m.embedder.model}
        if stage == "reranker":
            return {"model": self.reranker.model_name}
        return {"model": self.generator.model_name}
