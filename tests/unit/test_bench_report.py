"""How the benchmark report compares streaming setups, judges the TTFT target and splits
the added latency into the stage calls."""

from __future__ import annotations

from typing import Any

from serve.bench import report
from serve.bench.load import Point, RunResult


def point(setup: str, ttft_ms: float, concurrency: int = 1) -> Point:
    run = RunResult(seconds=1.0, latencies_ms=[ttft_ms + 1.0] * 10, first_token_ms=[ttft_ms] * 10)
    return Point(setup, concurrency, [run, run])


COMPARED = {
    "graph": ("engines", report.WHOLE_REQUEST),
    "graph, no retrieval": ("generator engine, no passages", report.STREAMING_PATH),
    "single process, no retrieval": ("generator engine, no passages", report.STREAMING_PATH),
    "Generator deployment": ("generator engine", report.GENERATOR_HOP),
}


def test_each_setup_is_compared_with_its_own_baseline() -> None:
    points = [
        point("engines", 6.0),
        point("graph", 20.0),
        point("generator engine, no passages", 0.1),
        point("graph, no retrieval", 2.6),
        point("generator engine", 0.5),
        point("Generator deployment", 2.0),
        point("graph", 40.0, concurrency=16),  # its baseline was not measured at 16
    ]
    rows = report.streaming_section(points, COMPARED)["comparison"]
    added = {(r["setup"], r["concurrency"]): r["added_ttft_p50_ms"] for r in rows}
    assert added == {
        ("graph", 1): 14.0,
        ("graph, no retrieval", 1): 2.5,
        ("Generator deployment", 1): 1.5,
    }


def test_ttft_target_is_judged_on_the_streaming_path_and_generator_hop() -> None:
    points = [
        point("engines", 6.0),
        point("graph", 20.0),
        point("generator engine, no passages", 0.1),
        point("graph, no retrieval", 6.1),
        point("single process, no retrieval", 0.4),
        point("generator engine", 0.5),
        point("Generator deployment", 2.0),
    ]
    results = {"streaming": report.streaming_section(points, COMPARED)}
    judged = {t["name"].split(":")[0]: t["met"] for t in report.targets(results)}
    # The whole request (retrieval hops included) and the single process are reference rows.
    assert judged == {"graph, no retrieval": False, "Generator deployment": True}


def figure(median: float) -> dict[str, float]:
    return {"median": median, "min": median - 0.1, "max": median + 0.2}


def test_stage_calls_split_the_added_latency_into_the_calls_and_the_rest() -> None:
    stages = ["Embedder", "Retriever", "Reranker", "Generator"]
    engines = dict(zip(stages, map(figure, (0.5, 0.8, 3.0, 1.2)), strict=True))
    handles = dict(zip(stages, map(figure, (3.0, 3.7, 6.6, 4.3)), strict=True))
    section: dict[str, Any] = {
        "comparison": [
            {"setup": "graph (direct ingress)", "concurrency": 1, "added_p50_ms": 14.3},
            {"setup": "graph (direct ingress)", "concurrency": 16, "added_p50_ms": 30.0},
        ],
        "stage_calls": {
            "stages": stages,
            "p50_ms": {
                "engines in this process": {**engines, "chain": figure(5.6)},
                "stage deployments (handles)": {**handles, "chain": figure(18.0)},
            },
        },
    }
    lines = report._stage_calls_markdown(section["stage_calls"], section)
    assert "| Reranker | 3.00 (2.90-3.20) | 6.60 (6.50-6.80) | +3.60 |" in lines
    assert "| the four in turn | 5.60 (5.50-5.80) | 18.00 (17.90-18.20) | +12.40 |" in lines
    # The 1-client figure of the direct ingress, split into the calls and the rest.
    assert any("+14.3 ms" in line and "+12.4 ms" in line and "(+1.9 ms)" in line for line in lines)
