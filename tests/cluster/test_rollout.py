"""A config change rolled out with the ``serve deploy`` CLI while traffic runs: a new
index version and a new generator setting, on the production resource shape. Every
request sent during the rollout must be answered."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from ray import serve

from deployments.embedder.config import HashingEmbedderConfig
from deployments.index.format import resolve_version_dir
from serve.bench.autoscale import ClosedLoopLoad, production_options
from serve.demo import DEMO_CORPUS
from serve.indexing.build import BuildSettings, build_index
from serve.ops.local_cluster import LocalCluster
from tests.cluster.support import DEPLOYMENTS, replicas
from tests.support import REPO

pytestmark = pytest.mark.cluster

APP = "rollout"
SERVE = Path(sys.executable).parent / "serve"
ROLLOUT_TIMEOUT_S = 180.0


def serve_config(cluster: LocalCluster, index_root: Path, max_sentences: int) -> dict[str, Any]:
    """serve_config.yaml's deployments (GPU fractions, autoscaling, surge, graceful
    shutdown) with the built-in stages, on this cluster's proxy and port."""
    deployments = [
        {"name": name, **options}
        for name, options in production_options(REPO / "serve_config.yaml").items()
    ]
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": cluster.http_port},
        "applications": [
            {
                "name": APP,
                "route_prefix": f"/{APP}",
                "import_path": "serve.app:build_app",
                "args": {
                    "index": {"path": str(index_root)},
                    "generator": {"backend": "extractive", "max_sentences": max_sentences},
                },
                "deployments": deployments,
            }
        ],
    }


def deploy(cluster: LocalCluster, config: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    subprocess.run(
        [str(SERVE), "deploy", str(path), "--address", cluster.dashboard_url],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )


def rolled_out(url: str, version: str) -> bool:
    status = serve.status().applications.get(APP)
    if status is None or status.status != "RUNNING":
        return False
    if any(d.status != "HEALTHY" for d in status.deployments.values()):
        return False
    health = requests.get(f"{url}/healthz", timeout=30)
    return health.ok and health.json()["index"]["version"] == version


def wait(condition: Any, timeout_s: float) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, "timed out"
        time.sleep(0.5)
    return time.monotonic() - start


def test_serve_deploy_of_a_changed_config_under_load_loses_no_request(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    index_root = tmp_path / "index"
    build_index([DEMO_CORPUS], index_root, HashingEmbedderConfig(), BuildSettings(progress=False))
    first = resolve_version_dir(index_root).name
    url = cluster.url(f"/{APP}")
    deploy(cluster, serve_config(cluster, index_root, 1), tmp_path / "v1.yaml")
    try:
        wait(lambda: rolled_out(url, first), ROLLOUT_TIMEOUT_S)
        before = {
            name: {a.actor_id for a in actors} for name, actors in replicas(cluster, APP).items()
        }
        build_index(
            [DEMO_CORPUS], index_root, HashingEmbedderConfig(), BuildSettings(progress=False)
        )
        second = resolve_version_dir(index_root).name
        assert second != first
        load = ClosedLoopLoad(f"{url}/v1/chat/completions", max_workers=3, max_requests=3000)
        with load.running():
            load.set_concurrency(3)
            time.sleep(2)
            started = time.monotonic()
            deploy(cluster, serve_config(cluster, index_root, 3), tmp_path / "v2.yaml")
            took = wait(lambda: rolled_out(url, second), ROLLOUT_TIMEOUT_S)
            time.sleep(2)
        after = {
            name: {a.actor_id for a in actors} for name, actors in replicas(cluster, APP).items()
        }
        during = load.between(started, float("inf"))
        statuses = {s.status for s in load.samples}
        print(
            f"rollout took {took:.1f} s; {len(load.samples)} requests, {len(during)} from the "
            f"deploy on: statuses {statuses}, {sum(s.degraded for s in load.samples)} degraded"
        )
        assert statuses == {200}, [s for s in load.samples if s.status != 200][:5]
        assert len(during) >= 10
        # Every stage whose arguments changed was replaced (the index version reaches all
        # but the generator; the generator's own setting changed too).
        replaced = [name for name in DEPLOYMENTS if not before[name] & after[name]]
        assert {"Embedder", "Retriever", "Reranker", "Generator"} <= set(replaced), replaced
        body = {"messages": [{"role": "user", "content": "香川県の県庁所在地はどこですか？"}]}
        answer = requests.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()
        assert answer["choices"][0]["message"]["content"]
    finally:
        serve.delete(APP)
