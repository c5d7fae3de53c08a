"""What the graph costs: the full RAG request through the five-deployment graph against
the same engines in one FastAPI process, and the time to first token of a streamed
answer against the engines called directly.

Runs alternate between the setups (and the setups' order rotates), so that a change
in the machine's load during the benchmark falls on every setup alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deployments.generator.protocol import ChatTurn, GenerationRequest
from deployments.ingress.stages import StageClient
from serve.bench.http_client import ChatClient
from serve.bench.load import Point, Request, RunResult, drive
from serve.bench.processes import CpuWatch


@dataclass(frozen=True)
class Plan:
    """How long and how often every point is measured."""

    runs: int
    seconds: float
    warmup_s: float


async def measure_http(
    setups: Mapping[str, str],
    questions: Sequence[str],
    levels: Sequence[int],
    plan: Plan,
    stream: bool,
    progress: Callable[[str], None] = lambda _: None,
    app: str | None = None,
    model: str | None = None,
) -> list[Point]:
    """Chat requests (for ``model``, default the RAG model) to each setup's base URL at
    each concurrency level; the CPU time of ``app``'s replicas is counted (all
    replicas' without it)."""

    def client(url: str) -> Callable[[], ChatClient]:
        return lambda: ChatClient(url, questions, stream, model)

    return await _alternate(
        {name: client(url) for name, url in setups.items()}, levels, plan, progress, app
    )


async def measure_in_process(
    setups: Mapping[str, Callable[[], Request]],
    levels: Sequence[int],
    plan: Plan,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Point]:
    """Requests made by calling Python directly (engines, handles), no HTTP."""
    return await _alternate(
        {name: _Reusable(make) for name, make in setups.items()}, levels, plan, progress
    )


class _Reusable:
    """A request callable used as a context manager, like ChatClient."""

    def __init__(self, make: Callable[[], Request]) -> None:
        self._make = make

    def __call__(self) -> _Reusable:
        return self

    async def __aenter__(self) -> Request:
        return self._make()

    async def __aexit__(self, *_: object) -> None:
        return None


async def _alternate(
    clients: Mapping[str, Callable[[], object]],
    levels: Sequence[int],
    plan: Plan,
    progress: Callable[[str], None],
    app: str | None = None,
) -> list[Point]:
    names = list(clients)
    points = {(name, level): Point(name, level) for level in levels for name in names}
    for run in range(plan.runs):
        for level in levels:
            order = names[run % len(names) :] + names[: run % len(names)]
            for name in order:
                # A new client (and connections) per measurement: a connection left
                # idle while the other setups run may be closed by the server.
                async with clients[name]() as request:  # type: ignore[attr-defined]
                    await drive(request, level, plan.warmup_s)
                    watch = CpuWatch(app)
                    watch.start()
                    result: RunResult = await drive(request, level, plan.seconds)
                    result.cpu_ms = watch.stop()
                points[(name, level)].runs.append(result)
                progress(
                    f"run {run + 1}/{plan.runs} {name} x{level}: "
                    f"{result.requests_per_s:.1f} req/s, p50 {result.percentile(50):.1f} ms"
                )
    return [points[(name, level)] for name in names for level in levels]


class EmptyStage:
    """A deployment that does nothing: one call to it is what a hop costs by itself."""

    async def echo(self, value: object) -> object:
        return value


def empty_hops(handles: Sequence[Any]) -> Request:
    """One call to each ``EmptyStage`` deployment in turn, through their handles."""

    async def request(number: int) -> float | None:
        for handle in handles:
            await handle.echo.remote("")
        return None

    return request


def engine_chain(stages: StageClient, questions: Sequence[str]) -> Request:
    """The RAG chain with the engines called directly in this process: retrieve,
    rerank, generate; returns the time to the first piece of text."""

    async def request(number: int) -> float | None:
        question = questions[number % len(questions)]
        start = time.perf_counter()
        hits = await stages.retrieve(question, None)
        top = await stages.rerank(question, hits, None)
        generation = GenerationRequest([ChatTurn("user", question)], [h.passage for h in top])
        first = None
        async for piece in stages.generate(generation):
            if first is None and piece.text:
                first = time.perf_counter() - start
        return first

    return request


def generation_only(stages: StageClient, requests: Sequence[GenerationRequest]) -> Request:
    """The generator alone, with passages retrieved beforehand; the time to its first
    piece of text."""

    async def request(number: int) -> float | None:
        generation = requests[number % len(requests)]
        start = time.perf_counter()
        first = None
        async for piece in stages.generate(generation):
            if first is None and piece.text:
                first = time.perf_counter() - start
        return first

    return request


async def prepared_generations(
    stages: StageClient, questions: Sequence[str], count: int = 32
) -> list[GenerationRequest]:
    """Generation requests with the passages the chain finds for the first questions."""
    prepared = []
    for question in questions[:count]:
        hits = await stages.retrieve(question, None)
        top = await stages.rerank(question, hits, None)
        prepared.append(GenerationRequest([ChatTurn("user", question)], [h.passage for h in top]))
    return prepared
