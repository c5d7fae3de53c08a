"""Nothing lost: index builds killed at random points while the graph serves from the
same index root, then a reload of a changed configuration (and the new index
version) under steady traffic. Every admitted request must be answered."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from ray import serve

from deployments.embedder.config import HashingEmbedderConfig
from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.index.format import list_versions, read_manifest, resolve_version_dir
from deployments.ingress.config import AuthConfig, IngressConfig
from deployments.retriever.config import IndexConfig
from serve.app import build_graph
from serve.config import AppConfig
from serve.demo import DEMO_CORPUS
from serve.indexing.build import BuildSettings, build_index
from tests.reliability.conftest import API_KEY_ENV, AUTH, Cluster, Report, Row, ask
from tests.reliability.load import steady_load
from tests.support import demo_questions

pytestmark = pytest.mark.reliability

APP = "reload"
QUESTIONS = [q["question"] for q in demo_questions()]
BUILD = [sys.executable, "-m", "serve.cli", "index", "build", str(DEMO_CORPUS), "--quiet"]


def app_config(root: Path, max_sentences: int) -> AppConfig:
    return AppConfig(
        index=IndexConfig(path=str(root)),
        generator=ExtractiveGeneratorConfig(max_sentences=max_sentences),
        ingress=IngressConfig(auth=AuthConfig(api_key_env=(API_KEY_ENV,))),
    )


@pytest.fixture(scope="module")
def index_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served-index") / "index"
    build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), BuildSettings(progress=False))
    return root


@pytest.fixture(scope="module")
def graph(cluster: Cluster, index_root: Path) -> Iterator[str]:
    serve.run(build_graph(app_config(index_root, 2)), name=APP, route_prefix=f"/{APP}")
    try:
        yield cluster.url(f"/{APP}")
    finally:
        serve.delete(APP)


DEPLOYMENTS = ("Ingress", "Embedder", "Retriever", "Reranker", "Generator")


def test_killed_builds_and_a_reload_lose_no_request(
    graph: str, cluster: Cluster, index_root: Path, report: Report
) -> None:
    url = f"{graph}/v1/chat/completions"
    served = resolve_version_dir(index_root).name
    rng = random.Random(5)
    killed = 0
    with steady_load(url, lambda i: ask(QUESTIONS[i % len(QUESTIONS)]), AUTH) as tally:
        time.sleep(2)
        builds_started = time.monotonic()
        for _ in range(4):
            build = subprocess.Popen([*BUILD, "--out", str(index_root)], stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.2, 0.9))  # a whole build takes about 1 s here
            build.send_signal(signal.SIGKILL)
            killed += build.wait() == -signal.SIGKILL
            current = resolve_version_dir(index_root)
            read_manifest(current, verify=True)  # whole, checksums and all
            for version in list_versions(index_root):
                read_manifest(index_root / "versions" / version, verify=True)
        subprocess.run([*BUILD, "--out", str(index_root)], check=True)
        new_version = resolve_version_dir(index_root).name
        assert new_version != served
        before = {d: {a.actor_id for a in cluster.replicas(APP, d)} for d in DEPLOYMENTS}
        reload_started = time.monotonic()
        serve.run(build_graph(app_config(index_root, 3)), name=APP, route_prefix=f"/{APP}")
        reload_took = time.monotonic() - reload_started
        time.sleep(3)
    replaced = [
        d for d in DEPLOYMENTS if not before[d] & {a.actor_id for a in cluster.replicas(APP, d)}
    ]
    health = requests.get(f"{graph}/healthz", timeout=30).json()
    assert health["index"]["version"] == new_version
    assert killed >= 1
    assert tally.server_errors == [], tally.server_errors[:3]
    assert tally.failed == 0 and tally.shed == 0, tally.statuses()
    assert {"Embedder", "Retriever", "Reranker", "Generator"} <= set(replaced)
    builds = tally.between(builds_started, reload_started)
    reload = tally.between(reload_started, float("inf"))
    report.add(
        Row(
            "index builds SIGKILLed while serving",
            builds.sent,
            builds.succeeded,
            builds.shed,
            builds.failed,
            notes=f"{killed} killed mid-build; served version whole each time, then a new one",
        )
    )
    report.add(
        Row(
            "reload of a changed config and index under load",
            reload.sent,
            reload.succeeded,
            reload.shed,
            reload.failed,
            reload_took,
            f"replicas replaced: {', '.join(replaced)}; recovery = time to redeploy",
        )
    )
