"""Retrieval speed: FAISS search plus passage lookup over an index, one query per call
against a batch of queries per call (the engine in this process), and the Retriever
deployment with its dynamic batching on and off at 32 concurrent clients."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deployments.retriever.config import IndexConfig, RetrieverConfig
from deployments.retriever.deployment import Retriever
from deployments.retriever.faiss_search import FaissRetriever
from serve.bench.load import Point, Request, drive
from serve.bench.overhead import Plan


def engine_search(retriever: FaissRetriever, vectors: NDArray[np.float32], batch: int) -> Request:
    """``batch`` query vectors per search call, called in this process."""

    async def request(number: int) -> None:
        start = (number * batch) % len(vectors)
        rows = np.take(vectors, range(start, start + batch), axis=0, mode="wrap")
        retriever.search(rows)

    return request


async def measure_engine(
    retriever: FaissRetriever,
    vectors: NDArray[np.float32],
    batch: int,
    plan: Plan,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Point]:
    """One query per call, then ``batch`` per call; runs alternate."""
    points = {
        size: Point(f"engine, {size} per call", 1, items_per_request=size) for size in (1, batch)
    }
    for run in range(plan.runs):
        for size in (1, batch) if run % 2 == 0 else (batch, 1):
            call = engine_search(retriever, vectors, size)
            await drive(call, 1, plan.warmup_s)
            result = await drive(call, 1, plan.seconds)
            points[size].runs.append(result)
            progress(
                f"run {run + 1}/{plan.runs} search {size} per call: {result.requests_per_s * size:.0f} q/s"
            )
    return list(points.values())


def deploy_retriever(
    config: RetrieverConfig, index: IndexConfig, version_dir: str, app_name: str
) -> Any:
    from ray import serve

    app = serve.deployment(
        Retriever,
        name="Retriever",
        max_ongoing_requests=128,
        ray_actor_options={"num_cpus": 0.25},
    ).bind(config, index, version_dir)
    return serve.run(app, name=app_name, route_prefix=None)


async def measure_served(
    handles: dict[str, Any],
    vectors: NDArray[np.float32],
    concurrency: int,
    plan: Plan,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Point]:
    """One query vector per request to each Retriever deployment (batching on, off)."""
    rows: Sequence[NDArray[np.float32]] = list(vectors)

    def call(handle: Any) -> Request:
        async def request(number: int) -> None:
            await handle.search.remote(rows[number % len(rows)])

        return request

    points = {name: Point(name, concurrency) for name in handles}
    names = list(handles)
    for run in range(plan.runs):
        for name in names[run % 2 :] + names[: run % 2]:
            await drive(call(handles[name]), concurrency, plan.warmup_s)
            result = await drive(call(handles[name]), concurrency, plan.seconds)
            points[name].runs.append(result)
            progress(
                f"run {run + 1}/{plan.runs} {name} x{concurrency}: {result.requests_per_s:.0f} q/s"
            )
    return list(points.values())
