"""How the HTTP API reaches the stages.

The routes depend only on :class:`StageClient`, which :class:`Stages` implements once,
over one typed handle per stage deployment. A handle reaches the deployment either
through Ray Serve (:class:`ServeHandle`, in the graph) or as an instance in this process
(:class:`InProcess`: the same deployment classes, as the single-process baseline of the
benchmarks and the HTTP-layer tests run them). Calls name the deployment's method
itself (``handle.call(Retriever.search, vector, top_k)``), so mypy checks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar

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

from deployments.embedder.deployment import Embedder
from deployments.errors import RequestRejected
from deployments.generator.deployment import Generator
from deployments.generator.protocol import GeneratedText, GenerationRequest
from deployments.passage import Hit
from deployments.reranker.deployment import Reranker
from deployments.reranker.protocol import RerankScores
from deployments.retriever.deployment import Retriever, UnknownKnowledgeBase
from deployments.retriever.filters import MetadataFilter
from deployments.retriever.search_parameters import SearchParameters

logger = logging.getLogger(__name__)

TextKind = Literal["query", "passage"]
Deployment = TypeVar("Deployment")
Deployment_co = TypeVar("Deployment_co", covariant=True)
Params = ParamSpec("Params")
Result = TypeVar("Result")
Result_co = TypeVar("Result_co", covariant=True)
Item = TypeVar("Item")
Item_co = TypeVar("Item_co", covariant=True)
STAGES = ("embedder", "retriever", "reranker", "generator")


@dataclass(frozen=True, slots=True)
class StageStatus:
    healthy: bool
    latency_ms: float
    details: dict[str, Any]
    error: str | None = None


class StageClient(Protocol):
    async def retrieve(
        self,
        query: str,
        top_k: int,
        knowledge_base: str | None = None,
        where: MetadataFilter | None = None,
        params: SearchParameters | None = None,
    ) -> list[Hit]: ...

    async def knowledge_bases(self) -> list[dict[str, Any]]: ...

    async def rerank(self, query: str, hits: list[Hit], top_n: int) -> list[Hit]: ...

    async def score(self, query: str, documents: list[str]) -> RerankScores: ...

    async def embed(self, texts: list[str], kind: TextKind) -> NDArray[np.float32]: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]: ...

    def generate_chunks(self, request: GenerationRequest) -> AsyncIterator[list[GeneratedText]]: ...

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


class KnowledgeBaseNotFound(Exception):
    """The retriever serves no knowledge base of this name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def unknown_knowledge_base(error: BaseException) -> UnknownKnowledgeBase | None:
    """The retriever's UnknownKnowledgeBase, raised here or in a replica (where Ray
    wraps it, keeping it as the cause)."""
    for candidate in (error, getattr(error, "cause", None)):
        if isinstance(candidate, UnknownKnowledgeBase):
            return candidate
    return None


class StageRejected(StageError):
    """The stage refused the request itself (a ``RequestRejected`` of its): the client's
    error, answered 400."""


def _rejection(error: BaseException) -> RequestRejected | None:
    """The stage's RequestRejected, raised here or in a replica (where Ray wraps it,
    keeping it as the cause)."""
    for candidate in (error, getattr(error, "cause", None)):
        if isinstance(candidate, RequestRejected):
            return candidate
    return None


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


def _cancel(response: Pending[Any] | PendingStream[Any]) -> None:
    """Cancel a stage request (and the replica's work on it) if it is still running.

    ``cancel()`` re-raises the error of a request that already failed (e.g. shed with
    BackPressureError): there is nothing left to stop then.
    """
    with contextlib.suppress(Exception):
        response.cancel()


class Pending(Awaitable[Result_co], Protocol[Result_co]):
    """A stage call in flight: awaited for its result, or cancelled."""

    def cancel(self) -> object: ...


class PendingStream(Protocol[Item_co]):
    """A streaming stage call in flight: iterated for its items, or cancelled."""

    def __aiter__(self) -> AsyncIterator[Item_co]: ...

    def cancel(self) -> object: ...


class StageHandle(Protocol[Deployment_co]):
    """One stage deployment's methods, called with their own signatures."""

    def call(
        self,
        method: Callable[Concatenate[Deployment_co, Params], Awaitable[Result]],
        /,
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> Pending[Result]: ...

    def stream(
        self,
        method: Callable[Concatenate[Deployment_co, Params], AsyncIterator[Item]],
        /,
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> PendingStream[Item]: ...


class ServeHandle(Generic[Deployment]):
    """A stage deployment reached through its Ray Serve DeploymentHandle."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._streaming = handle.options(stream=True)

    def call(
        self,
        method: Callable[Concatenate[Deployment, Params], Awaitable[Result]],
        /,
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> Pending[Result]:
        # .remote() itself raises BackPressureError when the deployment's queue is full.
        response: Pending[Result] = getattr(self._handle, method.__name__).remote(*args, **kwargs)
        return response

    def stream(
        self,
        method: Callable[Concatenate[Deployment, Params], AsyncIterator[Item]],
        /,
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> PendingStream[Item]:
        response: PendingStream[Item] = getattr(self._streaming, method.__name__).remote(
            *args, **kwargs
        )
        return response


class InProcess(Generic[Deployment]):
    """A stage deployment's class instantiated in this process (no Ray): each call runs
    as a task of this event loop."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def call(
        self,
        method: Callable[Concatenate[Deployment, Params], Awaitable[Result]],
        /,
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> Pending[Result]:
        return asyncio.ensure_future(method(self.deployment, *args, **kwargs))

    def stream(
        self,
        method: Callable[Concatenate[Deployment, Params], AsyncIterator[Item]],
        /,
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> PendingStream[Item]:
        return _LocalStream(method(self.deployment, *args, **kwargs))


class _LocalStream(Generic[Item]):
    def __init__(self, items: AsyncIterator[Item]) -> None:
        self._items = items
        self._closing: asyncio.Task[None] | None = None

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._items

    def cancel(self) -> None:
        """Stops the generator (as Serve stops a replica's stream); no-op once it ended."""
        if isinstance(self._items, AsyncGenerator) and self._closing is None:
            self._closing = asyncio.ensure_future(self._items.aclose())


class Stages:
    """The stage calls of the HTTP API, over one handle per stage deployment.

    A call whose replica dies is sent again (``retries`` times), which Serve routes
    to another replica; a full stage raises StageOverloaded at once. A call
    cancelled here (deadline, client gone) cancels its stage request, so the
    stage stops working on it.
    """

    def __init__(
        self,
        embedder: StageHandle[Embedder],
        retriever: StageHandle[Retriever],
        reranker: StageHandle[Reranker],
        generator: StageHandle[Generator],
        retries: int = 1,
    ) -> None:
        self.embedder = embedder
        self.retriever = retriever
        self.reranker = reranker
        self.generator = generator
        self._retries = retries

    async def _call(self, stage: str, send: Callable[[], Pending[Result]]) -> Result:
        """Await the call ``send`` starts; cancel it if cancelled."""
        for attempt in itertools.count():
            pending: Pending[Result] | None = None
            try:
                pending = send()
                return await pending
            except asyncio.CancelledError:
                if pending is not None:
                    _cancel(pending)
                raise
            except BackPressureError as error:
                raise StageOverloaded(stage, error.status_code, error.retry_after_s) from None
            except Exception as error:
                if (rejected := _rejection(error)) is not None:
                    raise StageRejected(stage, str(rejected)) from None
                if not _replica_lost(error):
                    raise
                if attempt >= self._retries:
                    raise StageUnavailable(stage, type(error).__name__) from None
                logger.warning("%s: a replica was lost (%s); retrying", stage, type(error).__name__)
        raise AssertionError("unreachable")

    async def retrieve(
        self,
        query: str,
        top_k: int,
        knowledge_base: str | None = None,
        where: MetadataFilter | None = None,
        params: SearchParameters | None = None,
    ) -> list[Hit]:
        """The ``top_k`` passages of ``knowledge_base`` (default: the retriever's first)
        nearest ``query``, only those matching ``where`` when given; raises
        KnowledgeBaseNotFound for a base the retriever does not serve."""
        vector = await self._call(
            "embedder", lambda: self.embedder.call(Embedder.embed_query, query)
        )
        try:
            return await self._call(
                "retriever",
                lambda: self.retriever.call(
                    Retriever.search, vector, top_k, knowledge_base, where, params
                ),
            )
        except Exception as error:
            unknown = unknown_knowledge_base(error)
            if unknown is None:
                raise
            raise KnowledgeBaseNotFound(unknown.name, str(unknown)) from None

    async def knowledge_bases(self) -> list[dict[str, Any]]:
        """The retriever's knowledge bases (name, description, passages, ...), the
        default one first."""
        return await self._call("retriever", lambda: self.retriever.call(Retriever.knowledge_bases))

    async def rerank(self, query: str, hits: list[Hit], top_n: int) -> list[Hit]:
        texts = [h.passage.document_text for h in hits]
        ranking = await self._call(
            "reranker", lambda: self.reranker.call(Reranker.rerank, query, texts, top_n)
        )
        return ranking.apply(hits)

    async def score(self, query: str, documents: list[str]) -> RerankScores:
        return await self._call(
            "reranker", lambda: self.reranker.call(Reranker.score, query, documents)
        )

    async def embed(self, texts: list[str], kind: TextKind) -> NDArray[np.float32]:
        return await self._call("embedder", lambda: self.embedder.call(Embedder.embed, texts, kind))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        """The generator's pieces one by one (``generate_chunks`` flattened)."""
        chunks = self.generate_chunks(request)
        try:
            async for chunk in chunks:
                for piece in chunk:
                    yield piece
        finally:
            await chunks.aclose()

    async def generate_chunks(
        self, request: GenerationRequest
    ) -> AsyncGenerator[list[GeneratedText], None]:
        """The generator's pieces as they arrive: a list of those ready together (one
        message from the replica each), so that a caller can handle them as one."""
        for attempt in itertools.count():
            stream: PendingStream[list[GeneratedText]] | None = None
            started = False
            try:
                stream = self.generator.stream(Generator.generate_chunks, request)
                async for chunk in stream:
                    started = True
                    yield chunk
                return
            except BackPressureError as error:
                raise StageOverloaded("generator", error.status_code, error.retry_after_s) from None
            except Exception as error:
                if (rejected := _rejection(error)) is not None:
                    raise StageRejected("generator", str(rejected)) from None
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
        calls: dict[str, Callable[[], Pending[dict[str, Any]]]] = {
            "embedder": lambda: self.embedder.call(Embedder.describe),
            "retriever": lambda: self.retriever.call(Retriever.describe),
            "reranker": lambda: self.reranker.call(Reranker.describe),
            "generator": lambda: self.generator.call(Generator.describe),
        }
        return await self._call(stage, calls[stage])
