"""The service's metrics: definitions, what the stages and the ingress record."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import ray
from fastapi.testclient import TestClient

from deployments import metrics
from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.generator.deployment import Generator
from deployments.generator.protocol import ChatTurn, GenerationRequest
from deployments.ingress.app import create_app
from deployments.ingress.config import AuthConfig, IngressConfig
from deployments.ingress.stages import StageUnavailable
from deployments.metrics import METRICS, IngressMetrics, StageMetrics, endpoint_of
from tests.support import RETRIEVAL, local_stages

QUESTION = "香川県の県庁所在地はどこですか？"


@dataclass
class FakeMetric:
    """Stands in for a Ray metric object: keeps what was recorded, with its tags."""

    name: str
    default_tags: dict[str, str] = field(default_factory=dict)
    records: list[tuple[float, dict[str, str]]] = field(default_factory=list)

    def set_default_tags(self, tags: dict[str, str]) -> None:
        self.default_tags = dict(tags)

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.records.append((value, {**self.default_tags, **(tags or {})}))

    observe = inc


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[FakeMetric]]:
    """Every metric object created from here on, by metric name."""
    created: dict[str, list[FakeMetric]] = {}

    def create(definition: metrics.MetricDefinition) -> FakeMetric:
        metric = FakeMetric(definition.name)
        created.setdefault(definition.name, []).append(metric)
        return metric

    monkeypatch.setattr(metrics, "_create", create)
    return created


def values(recorded: dict[str, list[FakeMetric]], name: str, **tags: str) -> list[float]:
    return [
        value
        for metric in recorded.get(name, [])
        for value, have in metric.records
        if all(have.get(k) == v for k, v in tags.items())
    ]


def test_definitions_are_unique_described_and_named_for_prometheus() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    for definition in METRICS:
        assert definition.name.startswith("jarag_") and definition.description
        assert definition.kind != "histogram" or definition.boundaries
        assert all(b > 0 for b in definition.boundaries)  # Ray refuses others
    assert metrics.STAGE_REQUESTS.exported_series == ("ray_jarag_stage_requests_total",)
    assert metrics.STAGE_LATENCY.exported_series == (
        "ray_jarag_stage_latency_seconds_bucket",
        "ray_jarag_stage_latency_seconds_sum",
        "ray_jarag_stage_latency_seconds_count",
    )


def test_ray_metric_objects_can_be_created_without_a_ray_cluster() -> None:
    # The HTTP layer runs in-process in the unit tests (the stages in process).
    StageMetrics("generate").tokens(3)
    IngressMetrics().request("chat", 200, 0.1)


def test_a_stage_call_is_counted_timed_and_its_error_typed(
    recorded: dict[str, list[FakeMetric]],
) -> None:
    stage = StageMetrics("rerank")
    with stage.call():
        pass
    with pytest.raises(ValueError), stage.call():
        raise ValueError("bad input")
    with pytest.raises(asyncio.CancelledError), stage.call():
        raise asyncio.CancelledError
    assert values(recorded, "jarag_stage_requests", stage="rerank") == [1.0, 1.0, 1.0]
    assert len(values(recorded, "jarag_stage_latency_seconds", stage="rerank")) == 3
    errors = [tags["error_type"] for _, tags in recorded["jarag_stage_errors"][0].records]
    assert errors == ["ValueError", "cancelled"]
    stage.top_score(0.8)
    assert values(recorded, "jarag_rerank_top_relevance") == [0.8]
    stage.tokens(5)  # not a generator: no such metric
    assert "jarag_generated_tokens" not in recorded


def test_the_generator_records_time_to_first_token_and_tokens(
    recorded: dict[str, list[FakeMetric]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside a replica: asking Ray for the placement group would start a Ray instance.
    monkeypatch.setattr(ray.util, "get_current_placement_group", lambda: None)
    connected = ray.is_initialized()
    generator = Generator(ExtractiveGeneratorConfig())
    assert ray.is_initialized() == connected  # no Ray instance started for it
    request = GenerationRequest(messages=[ChatTurn("user", QUESTION)], passages=[])

    async def run() -> list[Any]:
        return [piece async for piece in generator.generate(request)]

    pieces = asyncio.run(run())
    total = sum(p.tokens for p in pieces)
    assert total > 0
    assert values(recorded, "jarag_generated_tokens") == [total]
    (first_token,) = values(recorded, "jarag_time_to_first_token_seconds")
    (latency,) = values(recorded, "jarag_stage_latency_seconds", stage="generate")
    assert 0 <= first_token <= latency


def test_endpoint_labels() -> None:
    assert endpoint_of("/v1/chat/completions") == "chat"
    assert endpoint_of("/rerank/") == "rerank"
    assert endpoint_of("/ui/chat.js") == "other"


class DownReranker:
    """The built-in stages with the reranker down."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def rerank(self, *_: Any) -> Any:
        raise StageUnavailable("reranker", "ActorDiedError")


@pytest.fixture
def app_metrics(
    recorded: dict[str, list[FakeMetric]], demo_index: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, list[FakeMetric]]]]:
    monkeypatch.setenv("JARAG_METRICS_TEST_KEY", "k-123")
    config = IngressConfig(
        max_request_bytes=4096,
        auth=AuthConfig(api_key_env=("JARAG_METRICS_TEST_KEY",), exempt_paths=("/healthz",)),
    )
    app = create_app(DownReranker(local_stages(demo_index)), config, RETRIEVAL)
    with TestClient(app, headers={"Authorization": "Bearer k-123"}) as client:
        yield client, recorded


def test_the_ingress_counts_requests_errors_and_degraded_answers(
    app_metrics: tuple[TestClient, dict[str, list[FakeMetric]]],
) -> None:
    client, recorded = app_metrics
    ask = {"messages": [{"role": "user", "content": QUESTION}]}
    for _ in range(3):
        response = client.post("/v1/chat/completions", json=ask)
        assert response.status_code == 200 and response.headers["X-RAG-Degraded"] == "reranker"
    assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 400
    assert (
        client.post("/v1/chat/completions", json=ask, headers={"Authorization": ""}).status_code
        == 401
    )
    assert client.post("/v1/embeddings", content=b"x" * 5000).status_code == 413
    assert client.get("/nowhere").status_code == 404
    assert values(recorded, "jarag_requests", endpoint="chat", status="200") == [1.0] * 3
    assert len(values(recorded, "jarag_request_latency_seconds", endpoint="chat")) == 5
    errors = [tags["error_type"] for _, tags in recorded["jarag_request_errors"][0].records]
    assert errors == ["invalid_request", "invalid_api_key", "request_too_large", "not_found"]
    assert values(recorded, "jarag_degraded_answers", missing_stage="reranker") == [1.0] * 3
