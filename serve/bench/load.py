"""Closed-loop load: ``concurrency`` clients, each sending its next request as soon as
its last one is answered, for a fixed time; and the figures of several such runs.

Every point of the suite is measured ``runs`` times; a figure is the median of the
runs' values and its spread is their range (min..max), so one slow run on a shared
machine shows as spread rather than as the figure.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Request = Callable[[int], Awaitable[float | None]]
"""Sends request number ``n`` and waits for it; returns the time to its first token in
seconds where that is what is measured, else None. Raises on a failed request."""


@dataclass
class RunResult:
    """One run of one point: every completed request's latency, for ``seconds``."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    first_token_ms: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU time each watched process group spent during the run (see ``CpuWatch``)."""

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float, ttft: bool = False) -> float:
        values = self.first_token_ms if ttft else self.latencies_ms
        return float(np.percentile(values, q)) if values else float("nan")


@dataclass(frozen=True)
class Figure:
    """The median of several runs' values, with their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Figure:
        finite = [v for v in values if np.isfinite(v)]
        if not finite:
            return cls(float("nan"), float("nan"), float("nan"))
        return cls(float(statistics.median(finite)), min(finite), max(finite))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}

    def __str__(self) -> str:
        return f"{self.median:.1f} ({self.low:.1f}-{self.high:.1f})"


@dataclass
class Point:
    """One setup at one concurrency, measured ``len(runs)`` times."""

    setup: str
    concurrency: int
    runs: list[RunResult] = field(default_factory=list)
    items_per_request: int = 1

    def figure(self, metric: str) -> Figure:
        if metric == "items_per_s":
            return Figure.of([r.requests_per_s * self.items_per_request for r in self.runs])
        return Figure.of([_metric(run, metric) for run in self.runs])

    def summary(self, metrics: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "setup": self.setup,
            "concurrency": self.concurrency,
            "runs": len(self.runs),
            "requests": sum(r.requests for r in self.runs),
            "errors": sum(r.errors for r in self.runs),
        }
        for metric in metrics:
            out[metric] = self.figure(metric).as_dict()
        cpu = {
            group: Figure.of(
                [r.cpu_ms.get(group, 0.0) / r.requests for r in self.runs if r.requests]
            ).as_dict()
            for group in sorted({g for r in self.runs for g in r.cpu_ms})
        }
        if cpu:
            out["cpu_ms_per_request"] = cpu
        return out


def _metric(run: RunResult, metric: str) -> float:
    if metric == "requests_per_s":
        return run.requests_per_s
    if metric == "p50_ms":
        return run.percentile(50)
    if metric == "p99_ms":
        return run.percentile(99)
    if metric == "ttft_p50_ms":
        return run.percentile(50, ttft=True)
    if metric == "ttft_p99_ms":
        return run.percentile(99, ttft=True)
    raise KeyError(metric)


async def drive(request: Request, concurrency: int, seconds: float) -> RunResult:
    """``concurrency`` clients sending back to back for ``seconds``; requests still in
    flight at the end are finished but only those that ended in time are counted."""
    deadline = time.perf_counter() + seconds
    result = RunResult(seconds)
    counter = iter(range(1 << 62))

    async def client() -> None:
        while (start := time.perf_counter()) < deadline:
            try:
                first = await request(next(counter))
            except Exception:
                result.errors += 1
                await asyncio.sleep(0.01)  # a failing server must not become a busy loop
                continue
            end = time.perf_counter()
            if end <= deadline:
                result.latencies_ms.append((end - start) * 1000)
                if first is not None:
                    result.first_token_ms.append(first * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.seconds = min(time.perf_counter(), deadline) - began
    return result
