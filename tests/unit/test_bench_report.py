"""How the benchmark report compares streaming setups and judges the TTFT target."""

from __future__ import annotations

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
