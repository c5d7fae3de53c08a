"""Dynamic batching, shared by every stage that batches concurrent requests: its settings
and the one helper (:class:`Batcher`) that runs it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import Field

from deployments.config import StrictConfig


class BatchingSettings(StrictConfig):
    """How a replica groups concurrent calls into one engine call (``@serve.batch``).

    A replica holds at most ``max_ongoing_requests`` requests (the deployment option),
    so a batch can only fill if they carry ``max_batch_size`` items between them: for
    the Embedder (one query text per request) ``max_ongoing_requests >=
    max_batch_size``; for the Reranker (``top_k`` pairs per request)
    ``max_ongoing_requests * top_k >= max_batch_size``. ``jarag check`` warns otherwise.
    The settings can be changed on running replicas through ``user_config``.
    """

    max_batch_size: int = Field(32, ge=1, le=4096, description="Most calls in one engine call.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        le=10,
        description="Longest wait for a batch to fill before running it. 0 (the default): a "
        "batch is whatever arrived while the previous one ran, so a lone request never "
        "waits; a few ms fills bigger batches where one engine call is costly (a model on a "
        "GPU).",
    )
    batching: bool = Field(
        True,
        description="Set false to run every request on its own (for measuring batching gains): "
        "one engine call per request, never merged with other requests.",
    )


BatchedConfig = TypeVar("BatchedConfig", bound=BatchingSettings)
Call = TypeVar("Call")
Result = TypeVar("Result")


def with_batching(config: BatchedConfig, user_config: dict[str, Any]) -> BatchedConfig:
    """``config`` with the batching settings of a deployment's ``user_config`` applied.

    Lets an operator retune batching on running replicas (``user_config`` in the
    Serve config's ``deployments:`` entry) without restarting them.
    """
    unknown = set(user_config) - set(BatchingSettings.model_fields)
    if unknown:
        raise ValueError(
            f"user_config may only set {sorted(BatchingSettings.model_fields)}; "
            f"got {sorted(unknown)}"
        )
    return type(config).model_validate({**config.model_dump(), **user_config})


class Batcher(Generic[Call, Result]):
    """Runs a stage's engine on concurrent calls, grouped into batches.

    ``run`` is the engine work for a list of calls (one result per call, in order); it
    runs in a worker thread. In a Serve replica with batching on, concurrent calls go
    through a ``@serve.batch`` queue of this instance (at most ``max_batch_size`` items
    per engine call, items counted by ``size_of``; one engine call at a time), a lone
    call running straight away (:class:`BatchGate`). With batching off, every call is
    an engine call of its own, one at a time. Outside a replica (the stages in one
    process, without Ray), where Serve's batch queue cannot run, each call is an engine
    call of its own in a worker thread. Settings come from the stage's config and can
    be changed on running replicas (:meth:`configure`).
    """

    def __init__(
        self,
        run: Callable[[list[Call]], list[Result]],
        settings: BatchingSettings,
        size_of: Callable[[list[Call]], int] | None = None,
    ) -> None:
        self._run = run
        self._gate = BatchGate()
        self._one_call_at_a_time = asyncio.Lock()
        from ray import serve  # the settings above are read where Ray is absent

        self._queue: Any = (
            serve.batch(
                max_batch_size=settings.max_batch_size,
                batch_wait_timeout_s=settings.batch_wait_timeout_s,
                batch_size_fn=size_of,
            )(self._run_batch)
            if in_serve_replica()
            else None
        )
        self.settings = settings
        self.configure(settings)

    def configure(self, settings: BatchingSettings) -> None:
        self.settings = settings
        if self._queue is not None:
            self._queue.set_max_batch_size(settings.max_batch_size)
            self._queue.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        self._gate.batch_wait_timeout_s = settings.batch_wait_timeout_s

    async def submit(self, call: Call) -> Result:
        """The result of one call, computed alone or in a batch with concurrent calls."""
        if not self.settings.batching:
            async with self._one_call_at_a_time:
                return (await asyncio.to_thread(self._run, [call]))[0]
        if self._queue is None:
            return (await asyncio.to_thread(self._run, [call]))[0]
        result: Result = await self._gate.submit(
            lambda: self._run([call])[0], lambda: self._queue(call)
        )
        return result

    async def _run_batch(self, calls: list[Call]) -> list[Result]:
        with self._gate.running():
            return await asyncio.to_thread(self._run, calls)


def in_serve_replica() -> bool:
    """Whether this code runs in a Ray Serve replica (where ``@serve.batch`` can run)."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        serve.get_replica_context()
    except RayServeException:
        return False
    return True


class BatchGate:
    """Lets requests into a ``@serve.batch`` queue only while no batch of it runs, and
    lets a request that would be a batch of one skip the queue.

    Ray Serve's batch queue cuts a batch ``batch_wait_timeout_s`` after its first
    request, even while the previous batch still runs (the new one then waits for
    it), so under load batches stay as small as what arrives within that wait. Held
    here while a batch runs, the requests that arrive meanwhile enter the queue
    together when it ends and form the next batch whole.

    With ``batch_wait_timeout_s`` 0 (no waiting for company), a request that finds no
    batch running and none waiting would be a batch of one: it runs ``alone``,
    straight to the engine, without the queue's bookkeeping (about 0.35 ms of replica
    CPU per call, measured), holding the gate like a batch so that the requests
    arriving meanwhile queue up behind it and batch. With a wait, every request takes
    the queue, so that a lone one waits for company as configured.
    """

    def __init__(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()
        self._queued = 0
        self.batch_wait_timeout_s = 0.0
        """The batch queue's; the stage keeps it current."""

    async def submit(
        self, run_alone: Callable[[], Result], enqueue: Callable[[], Awaitable[Result]]
    ) -> Result:
        """One request: ``run_alone`` in a worker thread when it is alone, else
        ``enqueue`` (its ``@serve.batch`` call) once no batch runs."""
        if self.alone:
            with self.running():
                return await asyncio.to_thread(run_alone)
        async with self.queued():
            return await enqueue()

    @property
    def alone(self) -> bool:
        """Whether a request arriving now runs alone, without the batch queue."""
        return self.batch_wait_timeout_s == 0 and self._idle.is_set() and self._queued == 0

    @contextlib.asynccontextmanager
    async def queued(self) -> AsyncIterator[None]:
        """Wraps a request's way through the batch queue: waits until no batch runs,
        and counts the request as waiting until its batch has run."""
        self._queued += 1
        try:
            await self._idle.wait()
            yield
        finally:
            self._queued -= 1

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Wraps an engine call: a batch's, or a request's run alone."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()
