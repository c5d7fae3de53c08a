"""How the HTTP API reaches the stages: Ray Serve handles, or engines in-process.

The routes depend only on :class:`StageClient`. In the graph it is
:class:`GraphStages` (DeploymentHandles); :class:`LocalStages` runs the same
engines inside the API process, which is how the single-process baseline of
the benchmarks and the HTTP-layer unit tests run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from ray.exceptions import ObjectLostError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    RayServeException,
    ReplicaUnavailableError,
    RequestCancelledError,
)

from deployments.embedder.protocol import EmbedderEngine
from deployments.generator.protocol import GeneratedText, GenerationRequest, GeneratorEngine
from deployments.passage import Hit
from deployments.reranker.protocol import Ranking, RerankerEngine, RerankScores, rank_hits
from deployments.retriever.faiss_search import FaissRetriever

logger = logging.getLogger(__name__)

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
                if isinstance(error, asyncio.TimeoutError)
                else f"{type(error).__name__}: {error}"
            )
            return StageStatus(False, elapsed, {}, reason)
        return StageStatus(True, (time.perf_counter() - start) * 1000, details)

    statuses = await asyncio.gather(*(one(stage) for stage in STAGES))
    return dict(zip(STAGES, statuses, strict=True))


class StageError(Exception):
    """A stage could not serve a call; ``stage`` names it."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class StageOverloaded(StageError):
    """The stage's queue is full (Serve's ``max_queued_requests``): shed, retry later."""

    def __init__(self, stage: str, status: int, retry_after_s: float | None) -> None:
        super().__init__(stage, f"the {stage} stage is at capacity; retry later")
        self.status = status
        self.retry_after_s = retry_after_s


class StageUnavailable(StageError):
    """No replica of the stage could serve the call (died, not deployed)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(stage, f"the {stage} stage is unavailable ({reason})")


def _replica_lost(error: BaseException) -> bool:
    """Whether ``error`` says the call's replica (or its input's) went away, as opposed
    to the stage's code failing on this input."""
    if isinstance(error, (RayActorError, ObjectLostError)):
        return True
    if isinstance(error, (RayTaskError, RequestCancelledError)):
        return False
    # A bare RayServeException reports an upstream replica that died mid-call.
    return isinstance(error, (DeploymentUnavailableError, ReplicaUnavailableError)) or (
        type(error) is RayServeException
    )


def _cancel(response: Any) -> None:
    """Cancel a Serve request (and the replica's work on it) if it is still running.

    ``cancel()`` re-raises the error of a request that already failed (e.g. shed with
    BackPressureError): there is nothing left to stop then.
    """
    with contextlib.suppress(Exception):
        response.cancel()


class GraphStages:
    """The stages as Ray Serve deployments, reached through DeploymentHandles.

    A call whose replica dies is sent again (``retries`` times), which Serve routes
    to another replica; a full stage raises StageOverloaded at once. A call
    cancelled here (deadline, client gone) cancels its Serve request, so the
    stage's replica stops working on it.
    """

    def __init__(
        self, embedder: Any, retriever: Any, reranker: Any, generator: Any, retries: int = 1
    ) -> None:
        self._handles = {
            "embedder": embedder,
            "retriever": retriever,
            "reranker": reranker,
            "generator": generator,
        }
        self._stream = generator.options(stream=True)
        self._retries = retries

    async def _call(self, stage: str, send: Callable[[], tuple[Any, ...]]) -> Any:
        """Await the last of the responses ``send`` starts; cancel them all if cancelled."""
        for attempt in itertools.count():
            responses: tuple[Any, ...] = ()
            try:
                # .remote() itself raises BackPressureError when the queue is full.
                responses = send()
                return await responses[-1]
            except asyncio.CancelledError:
                for response in responses:
                    _cancel(response)
                raise
            except BackPressureError as error:
                raise StageOverloaded(stage, error.status_code, error.retry_after_s) from None
            except Exception as error:
                if not _replica_lost(error):
                    raise
                if attempt >= self._retries:
                    raise StageUnavailable(stage, type(error).__name__) from None
                logger.warning("%s: a replica was lost (%s); retrying", stage, type(error).__name__)
        raise AssertionError("unreachable")

    async def retrieve(self, query: str, top_k: int | None) -> list[Hit]:
        embedder, retriever = self._handles["embedder"], self._handles["retriever"]
        vector = await self._call("embedder", lambda: (embedder.embed_query.remote(query),))
        hits: list[Hit] = await self._call(
            "retriever", lambda: (retriever.search.remote(vector, top_k),)
        )
        return hits

    async def rerank(self, query: str, hits: list[Hit], top_n: int | None) -> list[Hit]:
        reranker = self._handles["reranker"]
        texts = [h.passage.document_text for h in hits]
        ranking: Ranking = await self._call(
            "reranker", lambda: (reranker.rerank.remote(query, texts, top_n),)
        )
        return ranking.apply(hits)

    async def score(self, query: str, documents: list[str]) -> RerankScores:
        reranker = self._handles["reranker"]
        scores: RerankScores = await self._call(
            "reranker", lambda: (reranker.score.remote(query, documents),)
        )
        return scores

    async def embed(self, texts: list[str], kind: TextKind) -> NDArray[np.float32]:
        embedder = self._handles["embedder"]
        vectors: NDArray[np.float32] = await self._call(
            "embedder", lambda: (embedder.embed.remote(texts, kind),)
        )
        return vectors

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        for attempt in itertools.count():
            stream = None
            started = False
            try:
                stream = self._stream.generate_chunks.remote(request)
                async for chunk in stream:
                    started = True
                    for piece in chunk:
                        yield piece
                return
            except BackPressureError as error:
                raise StageOverloaded("generator", error.status_code, error.retry_after_s) from None
            except Exception as error:
                if not _replica_lost(error):
                    raise
                if started or attempt >= self._retries:
                    raise StageUnavailable("generator", type(error).__name__) from None
                logger.warning("generator: a replica was lost (%s); retrying", type(error).__name__)
            finally:
                # Stops the replica's generation when the caller stops early (client
                # gone, deadline passed); a no-op once the stream has ended.
                if stream is not None:
                    _cancel(stream)

    async def describe(self, stage: str) -> dict[str, Any]:
        handle = self._handles[stage]
        details: dict[str, Any] = await self._call(stage, lambda: (handle.describe.remote(),))
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
