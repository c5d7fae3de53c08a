"""Two replicas per deployment; one of each killed (ray.kill) under steady traffic.

Serve replaces each; the ingress sends a call whose replica died to the other one,
so no request fails. Every response is counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray import serve

from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.ingress.config import AuthConfig, IngressConfig
from deployments.retriever.config import IndexConfig
from serve.app import build_graph
from serve.config import AppConfig
from tests.reliability.conftest import (
    API_KEY_ENV,
    AUTH,
    Cluster,
    Report,
    Row,
    ask,
)
from tests.reliability.load import steady_load
from tests.support import demo_questions

pytestmark = pytest.mark.reliability

APP = "pairs"
STAGES = ("Embedder", "Retriever", "Reranker", "Generator")
QUESTIONS = [q["question"] for q in demo_questions()]


@pytest.fixture(scope="module")
def graph(cluster: Cluster, demo_index: Path) -> Iterator[str]:
    config = AppConfig(
        index=IndexConfig(path=str(demo_index)),
        # Answers that take about a second, as an LLM's would: some are always in flight.
        generator=ExtractiveGeneratorConfig(piece_delay_s=0.05),
        ingress=IngressConfig(auth=AuthConfig(api_key_env=(API_KEY_ENV,))),
    )
    options = {name: {"num_replicas": 2} for name in ("Ingress", *STAGES)}
    serve.run(build_graph(config, options=options), name=APP, route_prefix=f"/{APP}")
    try:
        yield cluster.url(f"/{APP}")
    finally:
        serve.delete(APP)


def test_one_replica_of_each_stage_killed_under_load(
    graph: str, cluster: Cluster, report: Report
) -> None:
    url = f"{graph}/v1/chat/completions"
    kills: list[tuple[str, float, float]] = []
    with steady_load(url, lambda i: ask(QUESTIONS[i % len(QUESTIONS)]), AUTH) as tally:
        time.sleep(3)
        for stage in STAGES:
            killed_at = time.monotonic()
            killed = cluster.kill_replica(APP, stage)
            recovery = cluster.wait_for_replacement(APP, stage, killed, 2)
            kills.append((stage, killed_at, recovery))
            time.sleep(2)
        time.sleep(2)
    time.sleep(1)  # let the replicas flush their output
    # Calls the ingress sent again after their replica died.
    lost = {
        call: cluster.count_in_logs(APP, "Ingress", f"{call}: a replica was lost")
        for call in ("embedder", "retriever", "reranker", "generator")
    }
    retried = {
        "Embedder": f"embed retried {lost['embedder']}x",
        "Retriever": f"search retried {lost['retriever']}x",
        "Reranker": f"rerank retried {lost['reranker']}x",
        "Generator": f"generation retried {lost['generator']}x",
    }
    ends = [k[1] for k in kills[1:]] + [float("inf")]
    for (stage, killed_at, recovery), end in zip(kills, ends, strict=True):
        window = tally.between(killed_at, end)
        report.add(
            Row(
                f"{stage}: 1 of 2 replicas killed under load",
                window.sent,
                window.succeeded,
                window.shed,
                window.failed,
                recovery,
                f"{window.degraded} degraded; {retried[stage]}; ~6 req/s",
            )
        )
    assert tally.sent > 50
    assert tally.server_errors == [], tally.server_errors[:3]
    assert tally.failed == 0 and tally.shed == 0, tally.statuses()
    assert tally.degraded == 0


def test_an_ingress_replica_killed_under_load_loses_only_its_requests_in_flight(
    graph: str, cluster: Cluster, report: Report
) -> None:
    url = f"{graph}/v1/chat/completions"
    workers = 4
    with steady_load(url, lambda i: ask(QUESTIONS[i % len(QUESTIONS)]), AUTH, workers=workers) as t:
        time.sleep(2)
        killed_at = time.monotonic()
        killed = cluster.kill_replica(APP, "Ingress")
        recovery = cluster.wait_for_replacement(APP, "Ingress", killed, 2)
        time.sleep(2)
    lost = t.server_errors
    assert t.failed == len(lost) <= workers, t.statuses()
    assert all(o.started < killed_at + 1 for o in lost), "only requests in flight at the kill"
    report.add(
        Row(
            "Ingress: 1 of 2 replicas killed under load",
            t.sent,
            t.succeeded,
            t.shed,
            t.failed,
            recovery,
            f"{len(lost)} lost: in flight on the killed ingress "
            f"(HTTP {', '.join(str(s) for s in sorted({o.status for o in lost})) or '-'})",
        )
    )
