"""The Generator deployment: streams the engine's pieces to the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from deployments.generator.config import GeneratorConfig
from deployments.generator.factory import create_generator
from deployments.generator.protocol import (
    ChatTurn,
    GeneratedText,
    GenerationRequest,
    GeneratorEngine,
)


class Generator:
    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.engine: GeneratorEngine = create_generator(config)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        """Called with ``handle.options(stream=True)``; yields pieces as they come."""
        async for piece in self.engine.generate(request):
            yield piece

    def describe(self) -> dict[str, Any]:
        return {"model": self.engine.model_name}

    async def check_health(self) -> None:
        probe = GenerationRequest(messages=[ChatTurn("user", "健康")], max_tokens=1)
        async for _ in self.engine.generate(probe):
            break
