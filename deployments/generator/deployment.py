"""The Generator deployment: streams the engine's pieces to the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ray

from deployments.generator.config import GeneratorConfig
from deployments.generator.factory import create_generator
from deployments.generator.protocol import (
    ChatTurn,
    GeneratedText,
    GenerationRequest,
    GeneratorEngine,
    ManagedEngine,
)
from deployments.placement import replica_placement


class Generator:
    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        # vLLM's tensor-parallel workers go into the replica's placement group, if any.
        placement_group = ray.util.get_current_placement_group()
        self.engine: GeneratorEngine = create_generator(config, placement_group)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        """Called with ``handle.options(stream=True)``; yields pieces as they come.

        When the caller cancels the stream (the HTTP client went away), Serve cancels
        this generator and the engine's own cleanup aborts the request.
        """
        async for piece in self.engine.generate(request):
            yield piece

    def describe(self) -> dict[str, Any]:
        return {"model": self.engine.model_name, "placement": replica_placement()}

    async def check_health(self) -> None:
        if isinstance(self.engine, ManagedEngine):
            await self.engine.check_health()
            return
        probe = GenerationRequest(messages=[ChatTurn("user", "健康")], max_tokens=1)
        async for _ in self.engine.generate(probe):
            break

    def __del__(self) -> None:
        # Serve calls this when the replica shuts down: release the GPU engine.
        engine = getattr(self, "engine", None)
        if isinstance(engine, ManagedEngine):
            engine.close()
