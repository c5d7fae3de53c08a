"""Where a replica runs and what Ray gave it, for ``describe()`` and /healthz."""

from __future__ import annotations

from typing import Any

import ray


def replica_placement() -> dict[str, Any]:
    """The node, the resources Ray assigned (fractional GPUs included) and the GPU ids
    this replica sees. Reads Ray's public runtime context only; empty where the stage
    runs outside a Ray actor (the in-process stages, with or without Ray)."""
    if not ray.is_initialized():
        return {}
    context = ray.get_runtime_context()
    if context.get_actor_id() is None:
        return {}
    return {
        "node_id": context.get_node_id(),
        "resources": {k: round(v, 6) for k, v in context.get_assigned_resources().items()},
        "gpu_ids": [str(i) for i in context.get_accelerator_ids().get("GPU", [])],
    }
