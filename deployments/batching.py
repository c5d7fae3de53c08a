"""Dynamic batching settings shared by the stages that batch concurrent requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

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


class BatchGate:
    """Lets requests into a ``@serve.batch`` queue only while no batch of it runs.

    Ray Serve's batch queue cuts a batch ``batch_wait_timeout_s`` after its first
    request, even while the previous batch still runs (the new one then waits for
    it), so under load batches stay as small as what arrives within that wait. Held
    here while a batch runs, the requests that arrive meanwhile enter the queue
    together when it ends and form the next batch whole; a request that finds the
    engine idle goes straight through.
    """

    def __init__(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()

    async def wait(self) -> None:
        """Returns once no batch is running."""
        await self._idle.wait()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Wraps the engine call of a batch."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()
