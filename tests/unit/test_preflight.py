"""`jarag check`: schema, cross-section rules, and the replicas packed onto nodes."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from serve.cli import main
from serve.ops.preflight import check, ensure_reachable, format_report
from tests.support import REPO, free_port
from tests.unit.test_packing import node

PRODUCTION = REPO / "serve_config.yaml"


def production(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text(encoding="utf-8"))
    app = data["applications"][0]
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = app
        for part in parents:
            target = target[part]
        target[last] = value
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def messages(report: Any, level: str) -> str:
    return "\n".join(f.message for f in report.findings if f.level == level)


def test_the_production_graph_shares_one_gpu() -> None:
    report = check(PRODUCTION, nodes=[node("gpu-box", cpus=16, gpus=1)])
    assert report.ok, format_report(report)
    assert report.packing is not None and report.packing.fits
    gpus = {
        request.deployment: placement[0].gpu_ids for request, placement in report.packing.placed
    }
    assert gpus["Embedder"] == gpus["Reranker"] == gpus["Generator"] == (0,)
    text = format_report(report)
    assert "GPU 0 on gpu-box: Generator 0.7 + Embedder 0.1 + Reranker 0.1" in text
    assert "max_replicas" in messages(report, "warning")


def test_a_cluster_without_gpus_is_refused_with_the_reason() -> None:
    report = check(PRODUCTION, nodes=[node("cpu-box", cpus=64)])
    assert not report.ok
    assert (
        "Generator replica 1 (2 CPU, 0.7 GPU) cannot be placed: needs 0.7 of one GPU; "
        "the nodes have no GPU"
    ) in messages(report, "error")
    assert format_report(report).endswith("FAILED: some blocking problems found")


def test_vllm_memory_share_must_fit_the_generators_gpu_share(tmp_path: Path) -> None:
    data = production(**{"args.generator.gpu_memory_utilization": 0.9})
    report = check(write(tmp_path, data), connect=False)
    assert "gpu_memory_utilization 0.9 exceeds the Generator's GPU share (0.7)" in messages(
        report, "error"
    )


def test_tensor_parallel_needs_a_gpu_per_worker(tmp_path: Path) -> None:
    data = production(**{"args.generator.tensor_parallel_size": 2})
    assert "needs 2 GPUs" in messages(check(write(tmp_path, data), connect=False), "error")
    data = copy.deepcopy(data)
    generator = data["applications"][0]["deployments"][-1]
    generator["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 0}
    generator["placement_group_bundles"] = [{"CPU": 1, "GPU": 1}, {"GPU": 1}]
    generator["placement_group_strategy"] = "STRICT_PACK"
    report = check(write(tmp_path, data), nodes=[node("box", 16, gpus=3)])
    assert report.ok, format_report(report)


def test_a_cuda_stage_without_a_gpu_is_an_error(tmp_path: Path) -> None:
    data = production()
    data["applications"][0]["deployments"][1]["ray_actor_options"] = {"num_cpus": 1}
    report = check(write(tmp_path, data), connect=False)
    assert "Embedder: device is 'cuda' but the Embedder deployment requests no GPU" in messages(
        report, "error"
    )


def test_batches_that_can_never_fill_are_warned_about(tmp_path: Path) -> None:
    data = production()
    data["applications"][0]["deployments"][1]["max_ongoing_requests"] = 8
    report = check(write(tmp_path, data), connect=False)
    assert "Embedder: max_ongoing_requests (8) < embedder.max_batch_size (32)" in messages(
        report, "warning"
    )
    assert report.ok


def test_unknown_deployments_and_invalid_files_fail(tmp_path: Path) -> None:
    data = production()
    data["applications"][0]["deployments"][0]["name"] = "Ingres"
    assert "unknown deployment names ['Ingres']" in messages(
        check(write(tmp_path, data), connect=False), "error"
    )
    data = production()
    data["applications"][0]["deployments"][0]["max_ongoing_requests"] = -1
    assert "not a valid Ray Serve config" in messages(
        check(write(tmp_path, data), connect=False), "error"
    )
    data = production(**{"args.generator.backend": "gpt"})
    assert "args do not validate" in messages(check(write(tmp_path, data), connect=False), "error")


def test_an_index_built_by_another_embedder_is_reported(tmp_path: Path, demo_index: Path) -> None:
    data = production(**{"args.index.path": str(demo_index)})
    report = check(write(tmp_path, data), connect=False)
    warning = messages(report, "warning")
    assert "was built with a different embedder" in warning
    assert "backend: index 'hashing' != config 'sentence-transformers'" in warning
    data = production(**{"args.index.path": str(demo_index)})
    del data["applications"][0]["args"]["embedder"]
    assert "built with the configured embedder" in messages(
        check(write(tmp_path, data), connect=False), "info"
    )


def test_the_command_exits_non_zero_on_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(PRODUCTION), "--no-cluster"]) == 0
    data = production(**{"args.generator.gpu_memory_utilization": 0.95})
    assert main(["check", str(write(tmp_path, data)), "--no-cluster"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_an_address_where_nothing_listens_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"nothing answers at 127\.0\.0\.1"):
        ensure_reachable(f"127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 10
    ensure_reachable("auto")  # found by Ray itself: nothing to probe here


def test_every_knowledge_base_index_is_checked(tmp_path: Path, demo_index: Path) -> None:
    data = production()
    args = data["applications"][0]["args"]
    del args["index"], args["embedder"]
    args["knowledge_bases"] = {"prefectures": str(demo_index), "missing": str(tmp_path / "no")}
    report = check(write(tmp_path, data), connect=False)
    assert "knowledge base 'prefectures': index" in messages(report, "info")
    assert "knowledge base 'missing': index: cannot read" in messages(report, "warning")
