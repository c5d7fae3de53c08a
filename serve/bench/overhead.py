"""What the graph costs: the full RAG request through the five-deployment graph against
the same engines in one FastAPI process, and the time to first token of a streamed
answer against the engines called directly.

Runs alternate between the setups (and the setups' order rotates), so that a change
in the machine's load during the benchmark falls on every setup alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deployments.embedder.deployment import Embedder
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.ingress.config import RetrievalDefaults
from deployments.ingress.stages import StageClient, Stages
from deployments.passage import Hit
from deployments.retriever.deployment import Retriever
from serve.bench.http_client import ChatClient
from serve.bench.load import Figure, Point, Request, RunResult, drive
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


def engine_chain(
    stages: StageClient, questions: Sequence[str], retrieval: RetrievalDefaults
) -> Request:
    """The RAG chain with the stages called directly in this process: retrieve,
    rerank, generate; returns the time to the first piece of text."""

    async def request(number: int) -> float | None:
        question = questions[number % len(questions)]
        start = time.perf_counter()
        hits = await stages.retrieve(question, retrieval.top_k)
        top = await stages.rerank(question, hits, retrieval.top_n)
        generation = GenerationRequest([ChatTurn("user", question)], [h.passage for h in top])
        return await _first_text_after(start, stages.generate(generation))

    return request


def generation_only(stages: StageClient, requests: Sequence[GenerationRequest]) -> Request:
    """The generator alone, with passages retrieved beforehand; the time to its first
    piece of text."""

    async def request(number: int) -> float | None:
        generation = requests[number % len(requests)]
        start = time.perf_counter()
        return await _first_text_after(start, stages.generate(generation))

    return request


async def _first_text_after(start: float, pieces: AsyncIterator[GeneratedText]) -> float | None:
    """Reads the stream to its end; the time from ``start`` to its first piece of text."""
    first = None
    async for piece in pieces:
        if first is None and piece.text:
            first = time.perf_counter() - start
    return first


async def prepared_generations(
    stages: StageClient,
    questions: Sequence[str],
    retrieval: RetrievalDefaults,
    count: int = 32,
) -> list[GenerationRequest]:
    """Generation requests with the passages the chain finds for the first questions."""
    prepared = []
    for question in questions[:count]:
        hits = await stages.retrieve(question, retrieval.top_k)
        top = await stages.rerank(question, hits, retrieval.top_n)
        prepared.append(GenerationRequest([ChatTurn("user", question)], [h.passage for h in top]))
    return prepared


STAGE_CALLS = ("Embedder", "Retriever", "Reranker", "Generator")
"""The ingress's four calls of a chat, in order: embed the question, search, rerank,
generate."""


class ChainCalls:
    """The four calls of the RAG chain, made one by one through the ingress's stage
    handles: over Ray Serve in the graph, or to the same deployments in this process."""

    def __init__(self, stages: Stages, retrieval: RetrievalDefaults) -> None:
        self._stages = stages
        self._retrieval = retrieval

    async def embed(self, question: str) -> NDArray[np.float32]:
        return await self._stages.embedder.call(Embedder.embed_query, question)

    async def search(self, vector: NDArray[np.float32]) -> list[Hit]:
        return await self._stages.retriever.call(Retriever.search, vector, self._retrieval.top_k)

    async def rerank(self, question: str, hits: list[Hit]) -> list[Hit]:
        return await self._stages.rerank(question, hits, self._retrieval.top_n)

    async def generate(self, request: GenerationRequest) -> None:
        async for _ in self._stages.generate(request):
            pass


def timed_chain(
    calls: ChainCalls, questions: Sequence[str], times: Mapping[str, list[float]]
) -> Request:
    """The RAG chain made with ``calls``, each call's duration (ms) added to ``times``."""

    async def request(number: int) -> float | None:
        question = questions[number % len(questions)]
        start = time.perf_counter()
        vector = await calls.embed(question)
        embedded = time.perf_counter()
        hits = await calls.search(vector)
        searched = time.perf_counter()
        top = await calls.rerank(question, hits)
        reranked = time.perf_counter()
        await calls.generate(
            GenerationRequest([ChatTurn("user", question)], [h.passage for h in top])
        )
        marks = (start, embedded, searched, reranked, time.perf_counter())
        for stage, (begin, end) in zip(STAGE_CALLS, pairwise(marks), strict=True):
            times[stage].append((end - begin) * 1000)
        return None

    return request


async def measure_stage_calls(
    sides: Mapping[str, ChainCalls],
    questions: Sequence[str],
    plan: Plan,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Each side's chain one request at a time, runs alternating: per side, the
    median duration of each call and of the whole chain (median of the runs' medians,
    with their range)."""
    names = list(sides)
    medians: dict[str, dict[str, list[float]]] = {
        name: {part: [] for part in (*STAGE_CALLS, "chain")} for name in names
    }
    for run in range(plan.runs):
        for name in names[run % len(names) :] + names[: run % len(names)]:
            await drive(timed_chain(sides[name], questions, _times()), 1, plan.warmup_s)
            times = _times()
            result = await drive(timed_chain(sides[name], questions, times), 1, plan.seconds)
            for stage in STAGE_CALLS:
                medians[name][stage].append(statistics.median(times[stage]))
            medians[name]["chain"].append(result.percentile(50))
            progress(
                f"run {run + 1}/{plan.runs} {name}: "
                + ", ".join(f"{s} {statistics.median(times[s]):.2f}" for s in STAGE_CALLS)
                + f" ms (p50 per call); chain {result.percentile(50):.2f} ms"
            )
    return {
        "stages": list(STAGE_CALLS),
        "p50_ms": {
            name: {part: Figure.of(values).as_dict() for part, values in parts.items()}
            for name, parts in medians.items()
        },
    }


def _times() -> dict[str, list[float]]:
    return {stage: [] for stage in STAGE_CALLS}
