"""Retrieval speed: FAISS search plus passage lookup, one query per call against a
batch of queries per call (the engine in this process), and the Retriever deployment
at many concurrent clients with its dynamic batching on and off."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deployments.ingress.stages import ServeHandle
from deployments.retriever.config import IndexConfig, RetrieverConfig
from deployments.retriever.deployment import Retriever
from deployments.retriever.protocol import RetrieverEngine
from serve.bench.load import Point, Request, drive
from serve.bench.overhead import Plan

ON, OFF = "Retriever deployment, batching on", "Retriever deployment, batching off"


def engine_search(
    retriever: RetrieverEngine, vectors: NDArray[np.float32], batch: int, top_k: int
) -> Request:
    """``batch`` query vectors per search call, in this process."""

    async def request(number: int) -> None:
        start = (number * batch) % len(vectors)
        rows = np.take(vectors, range(start, start + batch), axis=0, mode="wrap")
        retriever.search(rows, top_k)

    return request


async def measure_engine(
    retriever: RetrieverEngine,
    vectors: NDArray[np.float32],
    batch: int,
    top_k: int,
    plan: Plan,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Point]:
    """One query per call, then ``batch`` per call; the order alternates run by run."""
    points = {
        size: Point(f"engine, {size} per call", 1, items_per_request=size) for size in (1, batch)
    }
    for run in range(plan.runs):
        for size in (1, batch) if run % 2 == 0 else (batch, 1):
            call = engine_search(retriever, vectors, size, top_k)
            await drive(call, 1, plan.warmup_s)
            result = await drive(call, 1, plan.seconds)
            points[size].runs.append(result)
            progress(
                f"run {run + 1}/{plan.runs} search, {size} per call: "
                f"{result.requests_per_s * size:.0f} queries/s"
            )
    return list(points.values())


def retriever_app(
    config: RetrieverConfig, index: IndexConfig, version_dir: str, ongoing: int
) -> Any:
    """One Retriever deployment on its own, as an application to run."""
    from ray import serve

    return serve.deployment(
        Retriever,
        name="Retriever",
        max_ongoing_requests=ongoing,
        ray_actor_options={"num_cpus": 0},
    ).bind(config, index, version_dir)


async def measure_served(
    handle: Any,
    vectors: NDArray[np.float32],
    top_k: int,
    concurrency: int,
    plan: Plan,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Point]:
    """One query vector per request; batching switched live between runs."""
    rows: Sequence[NDArray[np.float32]] = list(vectors)
    retriever: ServeHandle[Retriever] = ServeHandle(handle)

    async def request(number: int) -> None:
        await retriever.call(Retriever.search, rows[number % len(rows)], top_k)

    points = {on: Point(ON if on else OFF, concurrency) for on in (True, False)}
    for run in range(plan.runs):
        for on in (True, False) if run % 2 == 0 else (False, True):
            await handle.reconfigure.remote({"batching": on})
            await drive(request, concurrency, plan.warmup_s)
            result = await drive(request, concurrency, plan.seconds)
            points[on].runs.append(result)
            progress(
                f"run {run + 1}/{plan.runs} {points[on].setup} x{concurrency}: "
                f"{result.requests_per_s:.0f} queries/s"
            )
    return list(points.values())
