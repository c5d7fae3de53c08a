"""The Generator deployment: streams the engine's pieces to the caller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import ray

from deployments.coalesce import coalesced
from deployments.generator.config import GeneratorConfig
from deployments.generator.factory import create_generator
from deployments.generator.protocol import (
    ChatTurn,
    CountingEngine,
    GeneratedText,
    GenerationRequest,
    GeneratorEngine,
    ManagedEngine,
)
from deployments.health import probe
from deployments.metrics import StageMetrics
from deployments.placement import replica_placement

STARTED = GeneratedText(text="", tokens=0)
"""The first piece of every stream: tells the caller a replica has taken the request
(so that it can tell a generator that is down from one that is slow)."""


class Generator:
    """Generates answers (and plain chat) as a stream of text pieces."""

    def __init__(
        self,
        config: GeneratorConfig,
        engine_cls: Callable[[GeneratorConfig], GeneratorEngine] | None = None,
    ) -> None:
        self.config = config
        # vLLM's tensor-parallel workers go into the replica's placement group, if any;
        # an engine injected by a test is built from the config alone. (Asked outside Ray,
        # Ray would start a local instance to answer.)
        placement_group = ray.util.get_current_placement_group() if ray.is_initialized() else None
        self.engine: GeneratorEngine = (
            engine_cls(config) if engine_cls else create_generator(config, placement_group)
        )
        self._in_flight = 0
        self._cancelled = 0
        self.metrics = StageMetrics("generate")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        """Called with ``handle.options(stream=True)``; yields pieces as they come.

        A caller that stops early (client gone, deadline passed) cancels the request;
        the engine's generation is then stopped (vLLM's request aborted by the engine's
        own cleanup) and counted in ``describe()``.
        """
        started = time.perf_counter()
        yield STARTED
        self._in_flight += 1
        first_text = False
        tokens = 0
        try:
            with self.metrics.call():
                async for piece in self.engine.generate(request):
                    if not first_text and piece.text:
                        first_text = True
                        self.metrics.first_token(time.perf_counter() - started)
                    tokens += piece.tokens
                    yield piece
        except (asyncio.CancelledError, GeneratorExit):
            self._cancelled += 1
            raise
        finally:
            self._in_flight -= 1
            self.metrics.tokens(tokens)

    async def generate_chunks(
        self, request: GenerationRequest
    ) -> AsyncIterator[list[GeneratedText]]:
        """``generate``, with the pieces that are ready together sent as one list (one
        message to the caller per list, not per piece); the ingress calls this."""
        async for chunk in coalesced(self.generate(request)):
            yield chunk

    async def describe(self) -> dict[str, Any]:
        return {
            "model": self.engine.model_name,
            "generations_in_flight": self._in_flight,
            "generations_cancelled": self._cancelled,
            "engine": self.engine.stats() if isinstance(self.engine, CountingEngine) else {},
            "placement": replica_placement(),
        }

    async def check_health(self) -> None:
        """The engine's own check where it has one (vLLM); otherwise one generated
        piece, within a time limit."""
        if isinstance(self.engine, ManagedEngine):
            await probe("generator", self.engine.check_health())
            return
        request = GenerationRequest(messages=[ChatTurn("user", "健康")], max_tokens=1)
        pieces = await probe("generator", _first_piece(self.engine.generate(request)))
        if not pieces:
            raise RuntimeError("generator engine ended a probe without any piece")

    def __del__(self) -> None:
        # Serve calls this when the replica shuts down: release the GPU engine.
        engine = getattr(self, "engine", None)
        if isinstance(engine, ManagedEngine):
            engine.close()


async def _first_piece(pieces: AsyncIterator[GeneratedText]) -> list[GeneratedText]:
    try:
        async for piece in pieces:
            return [piece]
        return []
    finally:
        if isinstance(pieces, AsyncGenerator):
            await pieces.aclose()
