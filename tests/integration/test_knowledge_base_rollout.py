"""A knowledge base added to a running graph under load: the new set is deployed (the
Retriever's user_config naming one more base) while clients keep asking the first one
through Dify's /retrieval and the chat endpoint; not one request may fail, and the new
base answers once the rollout is done."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from ray import serve

from deployments.embedder.config import HashingEmbedderConfig
from serve.app import build_graph
from serve.config import AppConfig
from serve.indexing.build import BuildSettings, build_index
from tests.integration.conftest import ServeCluster
from tests.support import write_jsonl
from tests.unit.test_knowledge_bases import catalogue_records

pytestmark = pytest.mark.integration

APP = "knowledge-bases"
ROLLOUT_TIMEOUT_S = 150.0
CLIENTS = 3


def deploy(demo_index: Path, knowledge_bases: dict[str, str]) -> None:
    """The graph over the demo index, serving ``knowledge_bases`` (the Retriever's
    user_config); returns once it runs."""
    config = AppConfig.model_validate({"knowledge_bases": {"prefectures": str(demo_index)}})
    options = {"Retriever": {"user_config": {"knowledge_bases": knowledge_bases}}}
    serve.run(build_graph(config, options=options), name=APP, route_prefix=f"/{APP}")


class Load:
    """Clients asking the 'prefectures' base in a loop until stopped; every answer's
    status (or exception name) is counted."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(CLIENTS)
        ]

    def _request(self, n: int) -> requests.Response:
        if n % 2 == 0:
            body = {
                "knowledge_id": "prefectures",
                "query": "香川県の県庁所在地はどこですか？",
                "retrieval_setting": {"top_k": 3, "score_threshold": 0.0},
            }
            return requests.post(
                f"{self.base_url}/retrieval",
                json=body,
                headers={"Authorization": "Bearer any"},
                timeout=60,
            )
        chat = {"messages": [{"role": "user", "content": "北海道の道庁所在地は？"}]}
        return requests.post(f"{self.base_url}/v1/chat/completions", json=chat, timeout=60)

    def _run(self, n: int) -> None:
        while not self._stop.is_set():
            try:
                response = self._request(n)
                outcome = str(response.status_code)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
            except requests.RequestException as error:
                outcome = type(error).__name__
                self.failures.append(repr(error)[:200])
            with self._lock:
                self.outcomes[outcome] += 1
            time.sleep(0.05)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=70)


def answers_from(base_url: str, knowledge_id: str) -> bool:
    body = {
        "knowledge_id": knowledge_id,
        "query": "港町の資料",
        "retrieval_setting": {"top_k": 2, "score_threshold": 0.0},
    }
    response = requests.post(f"{base_url}/retrieval", json=body, timeout=30)
    return response.status_code == 200 and bool(response.json()["records"])


def test_a_knowledge_base_added_under_load_drops_no_request(
    serve_cluster: ServeCluster, demo_index: Path, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "catalogue.jsonl", catalogue_records())
    catalogue = tmp_path / "catalogue"
    build_index([corpus], catalogue, HashingEmbedderConfig(), BuildSettings(progress=False))
    base_url = serve_cluster.url(f"/{APP}")
    deploy(demo_index, {"prefectures": str(demo_index)})
    try:
        missing = requests.post(
            f"{base_url}/retrieval",
            json={
                "knowledge_id": "catalogue",
                "query": "港町",
                "retrieval_setting": {"top_k": 2, "score_threshold": 0.0},
            },
            timeout=30,
        )
        assert missing.status_code == 404 and missing.json()["error_code"] == 2001
        with Load(base_url) as load:
            time.sleep(2.0)  # traffic before the change
            before = sum(load.outcomes.values())
            deploy(demo_index, {"prefectures": str(demo_index), "catalogue": str(catalogue)})
            start = time.monotonic()
            while not answers_from(base_url, "catalogue"):
                assert time.monotonic() - start < ROLLOUT_TIMEOUT_S, "the new base never answered"
                time.sleep(0.5)
            time.sleep(2.0)  # traffic after the change
        total = sum(load.outcomes.values())
        assert load.failures == [], load.failures[:5]
        assert load.outcomes["200"] == total
        assert before > 0 and total > before + CLIENTS, load.outcomes
        models = requests.get(f"{base_url}/v1/models", timeout=30).json()["data"]
        assert {"ja-rag/prefectures", "ja-rag/catalogue"} <= {m["id"] for m in models}
    finally:
        serve.delete(APP)
