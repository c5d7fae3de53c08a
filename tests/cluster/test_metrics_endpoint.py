"""The service's metrics on Ray's Prometheus endpoints, after real traffic.

Replicas report to the metrics agent of their own node, so every alive node's
endpoint is scraped (as Prometheus does, from Ray's service discovery file) and the
series of this application summed. Counts are compared with what was sent.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.metrics import METRICS, SERVE_METRICS
from deployments.retriever.config import IndexConfig, RetrieverConfig
from serve.app import build_graph
from serve.bench.autoscale import production_options, wait_for_replicas
from serve.config import AppConfig
from serve.ops.local_cluster import LocalCluster
from tests.cluster.support import DEPLOYMENTS
from tests.support import REPO, demo_questions

pytestmark = pytest.mark.cluster

APP = "metrics"
TOP_K = 20
CHATS = 8
EMBEDDING_CALLS = 3
RERANK_CALLS = 2
STAGE_CALLS = {
    "embed": CHATS + EMBEDDING_CALLS,
    "retrieve": CHATS,
    "rerank": CHATS + RERANK_CALLS,
    "generate": CHATS,
}

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(cluster: LocalCluster) -> Series:
    """Every sample of every alive node's endpoint, summed over nodes and replicas, keyed
    by (sample name, labels other than those naming a process)."""
    totals: Series = defaultdict(float)
    process_labels = {"replica", "WorkerId", "NodeAddress", "SessionName", "Component", "pid"}
    for port in cluster.metrics_ports().values():
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = frozenset(
                    (k, v) for k, v in sample.labels.items() if k not in process_labels
                )
                totals[(sample.name, labels)] += sample.value
    return totals


def total(series: Series, name: str, **labels: str) -> float:
    wanted = {"application": APP, **labels}
    return sum(
        value
        for (sample, have), value in series.items()
        if sample == name and all((k, v) in have for k, v in wanted.items())
    )


def names(series: Series) -> set[str]:
    return {name for name, _ in series}


def wait_for(cluster: LocalCluster, ready: Callable[[Series], bool], timeout_s: float) -> Series:
    """Metrics reach the endpoints a second or two after they are recorded."""
    deadline = time.monotonic() + timeout_s
    while True:
        series = scrape(cluster)
        if ready(series) or time.monotonic() > deadline:
            return series
        time.sleep(1)


@pytest.fixture(scope="module")
def graph(cluster: LocalCluster, demo_index: Path) -> Iterator[str]:
    config = AppConfig(
        index=IndexConfig(path=str(demo_index)),
        retriever=RetrieverConfig(top_k=TOP_K),
        # A paced stream: the first piece comes well before the last.
        generator=ExtractiveGeneratorConfig(piece_delay_s=0.01),
    )
    options = production_options(REPO / "serve_config.yaml")
    serve.run(build_graph(config, options=options), name=APP, route_prefix=f"/{APP}")
    try:
        wait_for_replicas(APP, lambda c: all(c[n] >= 1 for n in DEPLOYMENTS), 120)
        yield cluster.url(f"/{APP}")
    finally:
        serve.delete(APP)


@pytest.fixture(scope="module")
def traffic(graph: str, cluster: LocalCluster) -> tuple[Series, Series, dict[str, Any]]:
    """Metrics before and after: chats, embeddings, reranks and one bad request."""
    before = scrape(cluster)
    sent: dict[str, Any] = {"completion_tokens": 0}
    questions = [q["question"] for q in demo_questions()][:CHATS]
    for question in questions:
        body = {"messages": [{"role": "user", "content": question}]}
        response = requests.post(f"{graph}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200 and not response.headers.get("X-RAG-Degraded")
        sent["completion_tokens"] += response.json()["usage"]["completion_tokens"]
    for _ in range(EMBEDDING_CALLS):
        texts = {"input": ["香川県", "讃岐うどん"], "input_type": "passage"}
        assert requests.post(f"{graph}/v1/embeddings", json=texts, timeout=60).ok
    for _ in range(RERANK_CALLS):
        pairs = {"query": "県庁所在地", "documents": ["高松市は県庁所在地。", "うどん"]}
        assert requests.post(f"{graph}/v1/rerank", json=pairs, timeout=60).ok
    bad = requests.post(f"{graph}/v1/chat/completions", json={"messages": []}, timeout=60)
    assert bad.status_code == 400

    def arrived(series: Series) -> bool:
        """Every replica exports on its own clock: wait until every count is in."""

        def delta(name: str, **labels: str) -> float:
            return total(series, name, **labels) - total(before, name, **labels)

        requests_in = (
            delta("ray_jarag_requests_total", endpoint="chat") >= CHATS + 1
            and delta("ray_jarag_requests_total", endpoint="embeddings") >= EMBEDDING_CALLS
            and delta("ray_jarag_requests_total", endpoint="rerank") >= RERANK_CALLS
            and delta("ray_jarag_request_errors_total") >= 1
            and delta("ray_jarag_request_latency_seconds_count", endpoint="chat") >= CHATS + 1
            and delta("ray_jarag_retrieved_candidates_count") >= CHATS
            and delta("ray_jarag_rerank_top_relevance_count") >= CHATS + RERANK_CALLS
            and delta("ray_jarag_time_to_first_token_seconds_count") >= CHATS
            and delta("ray_jarag_generated_tokens_total") >= sent["completion_tokens"]
        )
        return requests_in and all(
            delta(name, stage=stage) >= calls
            for stage, calls in STAGE_CALLS.items()
            for name in ("ray_jarag_stage_requests_total", "ray_jarag_stage_latency_seconds_count")
        )

    return before, wait_for(cluster, arrived, timeout_s=60), sent


def test_counts_match_the_requests_sent(traffic: tuple[Series, Series, dict[str, Any]]) -> None:
    before, after, _ = traffic

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("ray_jarag_requests_total", endpoint="chat", status="200") == CHATS
    assert delta("ray_jarag_requests_total", endpoint="chat", status="400") == 1
    assert delta("ray_jarag_requests_total", endpoint="embeddings") == EMBEDDING_CALLS
    assert delta("ray_jarag_requests_total", endpoint="rerank") == RERANK_CALLS
    assert delta("ray_jarag_request_errors_total", error_type="invalid_request") == 1
    for stage, calls in STAGE_CALLS.items():
        assert delta("ray_jarag_stage_requests_total", stage=stage) == calls, stage
        assert delta("ray_jarag_stage_latency_seconds_count", stage=stage) == calls, stage
        assert delta("ray_jarag_stage_latency_seconds_sum", stage=stage) > 0, stage
    assert delta("ray_jarag_stage_errors_total") == 0
    assert delta("ray_jarag_degraded_answers_total") == 0


def cumulative(before: Series, after: Series, name: str, **labels: str) -> dict[float, float]:
    """The new observations of histogram ``name`` at or below each bucket's bound."""
    bounds: dict[float, float] = defaultdict(float)
    wanted = {"application": APP, **labels}
    for series, sign in ((after, 1.0), (before, -1.0)):
        for (sample, have), value in series.items():
            tags = dict(have)
            if sample == f"{name}_bucket" and all(tags.get(k) == v for k, v in wanted.items()):
                bounds[float(tags["le"])] += sign * value
    return dict(bounds)


def test_values_are_plausible(traffic: tuple[Series, Series, dict[str, Any]]) -> None:
    # Ray exports a histogram's _sum computed from its buckets' midpoints, so values are
    # compared bucket by bucket.
    before, after, sent = traffic

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    def buckets(name: str, **labels: str) -> dict[float, float]:
        return cumulative(before, after, name, **labels)

    # Every search returned its top_k (20) candidates: all in the bucket (10, 20].
    candidates = buckets("ray_jarag_retrieved_candidates")
    assert candidates[10.0] == 0 and candidates[20.0] == CHATS == candidates[float("inf")]
    # Every rerank's best passage has a relevance in (0, 1].
    top = buckets("ray_jarag_rerank_top_relevance")
    assert top[1.0] == top[float("inf")] == CHATS + RERANK_CALLS
    assert 0 < delta("ray_jarag_rerank_top_relevance_sum") <= CHATS + RERANK_CALLS
    # Tokens: exactly what the responses' usage reported.
    assert delta("ray_jarag_generated_tokens_total") == sent["completion_tokens"] > 0
    # Time to first token: one per generation, each shorter than its generation, so at
    # every bound at least as many first tokens as finished generations (more at some).
    first_token = buckets("ray_jarag_time_to_first_token_seconds")
    generation = buckets("ray_jarag_stage_latency_seconds", stage="generate")
    assert first_token[float("inf")] == generation[float("inf")] == CHATS
    assert all(first_token[b] >= generation[b] for b in generation)
    assert any(first_token[b] > generation[b] for b in generation)
    assert delta("ray_jarag_time_to_first_token_seconds_sum") > 0
    # A whole chat request takes longer than its generation.
    chat = buckets("ray_jarag_request_latency_seconds", endpoint="chat")
    assert chat[float("inf")] == CHATS + 1  # and the bad request
    assert all(chat[b] - 1 <= generation[b] for b in generation)


def test_every_defined_metric_and_the_serve_metrics_used_are_exported(
    traffic: tuple[Series, Series, dict[str, Any]],
) -> None:
    _, after, _ = traffic
    exported = names(after)
    # Errors of the stages and degraded answers did not happen: their series exist only
    # once recorded, so they are checked by name in the unit tests instead.
    unrecorded = {"ray_jarag_stage_errors_total", "ray_jarag_degraded_answers_total"}
    for definition in METRICS:
        for series in definition.exported_series:
            assert series in exported or series in unrecorded, series
    for name in SERVE_METRICS:
        stems = {name, f"{name}_bucket", f"{name}_total"}
        assert stems & exported, name
