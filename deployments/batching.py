"""Dynamic batching settings shared by the stages that batch concurrent requests."""

from __future__ import annotations

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
        0.002, ge=0, le=10, description="Longest wait for a batch to fill before running it."
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
