"""`jarag bench run --quick` measures every section on a Ray instance of its own and
writes a results file with every field, a Markdown report and the plots."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from serve.bench.corpora import DEFAULT_DATA_DIR, record_sources
from serve.bench.report import REPORT_END, REPORT_START, update_report
from serve.bench.suite import QUICK, SECTIONS
from serve.cli import main

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"


def assert_figure(figure: Mapping[str, float], what: str) -> None:
    """A median with its spread: finite, and min <= median <= max."""
    assert set(figure) == {"median", "min", "max"}, what
    assert all(math.isfinite(v) for v in figure.values()), (what, figure)
    assert figure["min"] <= figure["median"] <= figure["max"], (what, figure)


def assert_point(point: Mapping[str, Any], metrics: tuple[str, ...], levels: set[int]) -> None:
    what = f"{point['setup']} x{point['concurrency']}"
    assert point["concurrency"] in levels, what
    assert point["runs"] == QUICK.runs, what
    assert point["requests"] > 0 and point["errors"] == 0, what
    for metric in metrics:
        assert_figure(point[metric], f"{what} {metric}")
        assert point[metric]["median"] > 0, f"{what} {metric}"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    assert main(["bench", "run", "--quick", "--out", str(out)]) == 0
    (directory,) = out.iterdir()  # one directory, named by the start time
    return directory


@pytest.fixture(scope="module")
def results(quick_run: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((quick_run / "results.json").read_text("utf-8"))
    return loaded


def test_the_run_is_described(results: dict[str, Any]) -> None:
    assert results["quick"] is True
    assert results["schema_version"] == 1
    env = results["environment"]
    assert env["machine"]["cpus"] >= 1 and env["machine"]["memory_gib"] > 0
    assert env["machine"]["cpu_model"] and env["machine"]["platform"]
    for package in ("python", "ray", "fastapi", "faiss-cpu", "numpy"):
        assert env["versions"][package], package
    for moment in ("before", "after"):
        assert len(env["load_average"][moment]) == 3
    assert env["ray_serve_settings"]["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert results["settings"]["runs"] == QUICK.runs
    assert set(results["section_seconds"]) >= {"deploy", "graph", "batching", "retrieval"}
    assert set(results["stages"]) == {"embedder", "retriever", "reranker", "generator"}
    assert results["duration_s"] > 0
    assert results["finished_at"] >= results["started_at"]


def test_every_section_is_measured(results: dict[str, Any]) -> None:
    assert set(SECTIONS) <= set(results)


def test_graph_overhead(results: dict[str, Any]) -> None:
    section = results["overhead"]
    assert section["baseline"] == "single process"
    assert section["setups"][0] == "single process"
    assert {"graph (direct ingress)", "graph (Serve proxy)"} <= set(section["setups"])
    levels = set(QUICK.concurrency)
    assert {(p["setup"], p["concurrency"]) for p in section["points"]} == {
        (setup, level) for setup in section["setups"] for level in levels
    }
    for point in section["points"]:
        assert_point(point, ("requests_per_s", "p50_ms", "p99_ms"), levels)
        assert point["p50_ms"]["median"] <= point["p99_ms"]["median"]
    assert len(section["comparison"]) == (len(section["setups"]) - 1) * len(levels)
    for row in section["comparison"]:
        assert row["throughput_ratio"] > 0 and math.isfinite(row["added_p50_ms"])
    for replica in ("Ingress", "Embedder", "Retriever", "Reranker", "Generator"):
        assert section["resident_mib"][replica] > 0, replica
    floor, chain = section["hop_floor"], section["hop_chain"]
    assert floor["setup"] == "empty deployment (handle)" and floor["errors"] == 0
    assert chain["setup"] == "four empty deployments in turn (handles)" and chain["errors"] == 0
    for point in (floor, chain):
        assert_point(point, ("requests_per_s", "p50_ms", "p99_ms"), {1})
        assert point["cpu_ms_per_request"]["EmptyStage"]["median"] > 0
    # Four calls take longer than one.
    assert chain["p50_ms"]["median"] > floor["p50_ms"]["median"]
    calls = section["stage_calls"]
    stages = ["Embedder", "Retriever", "Reranker", "Generator"]
    assert calls["stages"] == stages
    assert set(calls["p50_ms"]) == {"engines in this process", "stage deployments (handles)"}
    for parts in calls["p50_ms"].values():
        assert set(parts) == {*stages, "chain"}
        for figure in parts.values():
            assert 0 < figure["min"] <= figure["median"] <= figure["max"]
        # The chain's latency holds its four calls.
        assert parts["chain"]["median"] >= 0.9 * sum(parts[s]["median"] for s in stages)
    handles = calls["p50_ms"]["stage deployments (handles)"]
    # Every call through a deployment costs at least a hop.
    for stage in stages:
        assert handles[stage]["median"] > 0.5 * floor["p50_ms"]["median"], stage


def test_streaming(results: dict[str, Any]) -> None:
    section = results["streaming"]
    levels = set(QUICK.stream_concurrency)
    setups = {p["setup"] for p in section["points"]}
    assert {
        "single process",
        "graph (direct ingress)",
        "engines called directly",
        "generator engine alone",
        "Generator deployment (handle)",
        "graph (direct ingress), generator model (no retrieval)",
        "generator engine alone, no passages",
    } <= setups
    for point in section["points"]:
        assert_point(point, ("requests_per_s", "ttft_p50_ms", "ttft_p99_ms"), levels)
        assert point["ttft_p50_ms"]["median"] <= point["p50_ms"]["median"] + 1e-6
    baselines = {(c["setup"], c["baseline"], c["measures"]) for c in section["comparison"]}
    assert ("graph (direct ingress)", "engines called directly", "whole RAG request") in baselines
    assert (
        "graph (direct ingress), generator model (no retrieval)",
        "generator engine alone, no passages",
        "streaming path",
    ) in baselines
    assert (
        "Generator deployment (handle)",
        "generator engine alone",
        "generator hop",
    ) in baselines


def test_dynamic_batching(results: dict[str, Any]) -> None:
    section = results["batching"]
    assert [r["stage"] for r in section["stages"]] == ["Embedder", "Reranker"]
    for row in section["stages"]:
        assert row["concurrency"] == QUICK.batching_concurrency
        assert row["max_batch_size"] >= 1 and row["speedup"] > 0
        for side in ("batching_on", "batching_off"):
            assert_point(
                row[side], ("requests_per_s", "items_per_s", "p50_ms"), {row["concurrency"]}
            )
    assert section["models"] is None  # the quick mode leaves the models out


def test_retrieval(results: dict[str, Any]) -> None:
    section = results["retrieval"]
    names = [index["index"] for index in section["indexes"]]
    record = record_sources(DEFAULT_DATA_DIR) is not None
    assert names[0] == "demo" and len(names) == (2 if record else 1)
    assert (section["record_data"] is not None) == record
    for index in section["indexes"]:
        assert index["passages"] > 0 and index["faiss_factory"]
        hows = {(p["setup"], p["queries_per_call"]) for p in index["points"]}
        assert hows == {
            ("engine, 1 per call", 1),
            (f"engine, {QUICK.retrieval_batch} per call", QUICK.retrieval_batch),
            ("Retriever deployment, batching on", 1),
            ("Retriever deployment, batching off", 1),
        }
        for point in index["points"]:
            levels = {1, QUICK.batching_concurrency}
            assert_point(point, ("queries_per_s", "p50_ms", "p99_ms"), levels)


def test_scale(results: dict[str, Any]) -> None:
    section = results["scale"]
    assert section["faiss_factory"] and section["embedder"]
    assert [p["passages"] for p in section["points"]] == list(QUICK.scale.sizes)
    for row in section["points"]:
        assert row["index_mib"] > 0 and row["build_s"] >= 0
        assert row["resident_mib"]["Retriever"] > 0
        for point in row["points"]:
            assert_point(
                point, ("requests_per_s", "p50_ms", "p99_ms"), set(QUICK.scale.concurrency)
            )


def test_targets_are_judged(results: dict[str, Any]) -> None:
    names = " ".join(t["name"] for t in results["targets"])
    assert "added p50 latency at 1 client" in names
    assert "added time to first token at 1 client" in names
    for target in results["targets"]:
        assert isinstance(target["met"], bool) and math.isfinite(target["value"])


def test_report_and_plots_are_written(quick_run: Path, results: dict[str, Any]) -> None:
    markdown = (quick_run / "results.md").read_text("utf-8")
    for heading in ("Targets", "Graph overhead", "Streaming", "Dynamic batching", "Retrieval"):
        assert f"## {heading}" in markdown, heading
    assert "quick mode" in markdown
    # The stage-by-stage table: a row per call and one for the four in turn.
    assert "Where the added latency goes" in markdown
    for call in ("Embedder", "Retriever", "Reranker", "Generator", "the four in turn"):
        assert f"\n| {call} | " in markdown, call
    plots = sorted(p.name for p in quick_run.glob("*.png"))
    assert plots == [
        "latency_vs_concurrency.png",
        "scale.png",
        "throughput_vs_concurrency.png",
        "ttft.png",
    ]
    for plot in quick_run.glob("*.png"):
        assert plot.read_bytes().startswith(PNG), plot.name


def test_the_report_fills_the_marked_block_of_a_page(
    quick_run: Path, results: dict[str, Any], tmp_path: Path
) -> None:
    page = tmp_path / "performance.md"
    before, after = "# Performance\n\n## Figures\n\nHow to run it.\n\n", "\n\n## Next\n"
    page.write_text(f"{before}{REPORT_START}\nold figures\n{REPORT_END}{after}", "utf-8")
    update_report(page, results, quick_run)
    text = page.read_text("utf-8")
    assert text.startswith(before + REPORT_START) and text.endswith(REPORT_END + after)
    assert "old figures" not in text
    assert "### Graph overhead" in text and "\n## Graph overhead" not in text
    assert quick_run.name in text
    other = tmp_path / "OTHER.md"
    other.write_text("# Nothing to fill\n", "utf-8")
    with pytest.raises(ValueError, match="no block"):
        update_report(other, results, quick_run)
