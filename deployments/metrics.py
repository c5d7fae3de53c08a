"""The service's own metrics, defined once, recorded through Ray Serve's metrics API.

The stage deployments record what they did (calls, latency, errors by type, and
what only they know: candidates retrieved, the top passage's rerank score, tokens
generated, time to the first token); the ingress records what clients saw (requests
by endpoint and status, end-to-end latency, errors by type, degraded answers).

Ray exports every metric on each node's metrics port as Prometheus text, with the
prefix ``ray_``, counters with the suffix ``_total`` and histograms as ``_bucket``,
``_sum`` and ``_count``. Serve adds the tags ``application``, ``deployment`` and
``replica``. ``exported_series`` gives the names as Prometheus sees them; the Grafana
dashboard (``serve/ops/grafana.py``) and the tests use them, so a renamed metric cannot
silently leave a panel empty.

Recording never fails a request: outside a Ray worker (unit tests, the in-process
stages) the metric objects record into the void.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from ray.serve import metrics as serve_metrics

Stage = Literal["embed", "retrieve", "rerank", "generate"]
STAGES: tuple[Stage, ...] = ("embed", "retrieve", "rerank", "generate")
Endpoint = Literal["chat", "embeddings", "rerank", "models", "health", "other"]
PROMETHEUS_PREFIX = "ray_"


@dataclass(frozen=True)
class MetricDefinition:
    """One metric: its name as defined with Ray, kind, meaning, tags and buckets."""

    name: str
    kind: Literal["counter", "histogram"]
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    @property
    def exported_name(self) -> str:
        """The name on Ray's Prometheus endpoint (for a histogram, the stem of its series)."""
        suffix = "_total" if self.kind == "counter" else ""
        return f"{PROMETHEUS_PREFIX}{self.name}{suffix}"

    @property
    def exported_series(self) -> tuple[str, ...]:
        if self.kind == "histogram":
            return tuple(f"{self.exported_name}_{part}" for part in ("bucket", "sum", "count"))
        return (self.exported_name,)


LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""From a GPU embedding of one query (a few ms) to a long generation (a minute)."""

STAGE_REQUESTS = MetricDefinition(
    "jarag_stage_requests",
    "counter",
    "Calls a stage replica served (failed ones included), by stage: embed, retrieve, "
    "rerank, generate.",
    ("stage",),
)
STAGE_LATENCY = MetricDefinition(
    "jarag_stage_latency_seconds",
    "histogram",
    "Time a stage replica took per call, batching wait included; for generate, the whole stream.",
    ("stage",),
    LATENCY_BUCKETS_S,
)
STAGE_ERRORS = MetricDefinition(
    "jarag_stage_errors",
    "counter",
    "Calls a stage replica failed, by stage and error type (the exception's class name; "
    "'cancelled' when the caller gave up).",
    ("stage", "error_type"),
)
RETRIEVED_CANDIDATES = MetricDefinition(
    "jarag_retrieved_candidates",
    "histogram",
    "Candidate passages the retriever returned per search.",
    (),
    (1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0),
)
RERANK_TOP_SCORE = MetricDefinition(
    "jarag_rerank_top_relevance",
    "histogram",
    "Relevance (0..1) the reranker gave its best passage, per call: low values mean "
    "questions the index cannot answer.",
    (),
    (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
GENERATED_TOKENS = MetricDefinition(
    "jarag_generated_tokens",
    "counter",
    "Tokens the generator produced (its rate is the decoding throughput).",
)
TIME_TO_FIRST_TOKEN = MetricDefinition(
    "jarag_time_to_first_token_seconds",
    "histogram",
    "Time from a generation call reaching a generator replica to its first text.",
    (),
    LATENCY_BUCKETS_S,
)
REQUESTS = MetricDefinition(
    "jarag_requests",
    "counter",
    "HTTP requests the ingress answered, by endpoint and status code.",
    ("endpoint", "status"),
)
REQUEST_LATENCY = MetricDefinition(
    "jarag_request_latency_seconds",
    "histogram",
    "End-to-end time per HTTP request at the ingress, until the last byte (a whole stream).",
    ("endpoint",),
    LATENCY_BUCKETS_S,
)
REQUEST_ERRORS = MetricDefinition(
    "jarag_request_errors",
    "counter",
    "Error responses the ingress sent, by error type (the error's code: overloaded, "
    "stage_unavailable, deadline_exceeded, invalid_request, ...).",
    ("error_type",),
)
DEGRADED_ANSWERS = MetricDefinition(
    "jarag_degraded_answers",
    "counter",
    "Chat answers given without a stage, by the stage left out (reranker, generator).",
    ("missing_stage",),
)

STAGE_METRICS = (
    STAGE_REQUESTS,
    STAGE_LATENCY,
    STAGE_ERRORS,
    RETRIEVED_CANDIDATES,
    RERANK_TOP_SCORE,
    GENERATED_TOKENS,
    TIME_TO_FIRST_TOKEN,
)
INGRESS_METRICS = (REQUESTS, REQUEST_LATENCY, REQUEST_ERRORS, DEGRADED_ANSWERS)
METRICS = STAGE_METRICS + INGRESS_METRICS
"""Every metric the service defines."""

SERVE_METRICS: dict[str, str] = {
    "ray_serve_deployment_replica_healthy": "1 per healthy replica, by deployment and replica.",
    "ray_serve_autoscaling_target_replicas": "Replicas the autoscaler wants, by deployment.",
    "ray_serve_replica_processing_queries": "Requests a replica is working on (what "
    "autoscaling compares with target_ongoing_requests).",
    "ray_serve_deployment_queued_queries": "Requests waiting at a caller for a replica.",
    "ray_serve_num_http_requests_total": "HTTP requests through Serve's proxies.",
}
"""Ray Serve's own metrics that the dashboard uses next to ours (exported names)."""


def _create(definition: MetricDefinition) -> Any:
    tags = definition.tag_keys or None
    if definition.kind == "counter":
        return serve_metrics.Counter(
            definition.name, description=definition.description, tag_keys=tags
        )
    return serve_metrics.Histogram(
        definition.name,
        description=definition.description,
        boundaries=list(definition.boundaries),
        tag_keys=tags,
    )


def error_type(error: BaseException) -> str:
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    return type(error).__name__


class StageMetrics:
    """What one stage replica records; created in the deployment's constructor."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self._requests = _create(STAGE_REQUESTS)
        self._latency = _create(STAGE_LATENCY)
        self._errors = _create(STAGE_ERRORS)
        for metric in (self._requests, self._latency, self._errors):
            metric.set_default_tags({"stage": stage})
        self._candidates = _create(RETRIEVED_CANDIDATES) if stage == "retrieve" else None
        self._top_score = _create(RERANK_TOP_SCORE) if stage == "rerank" else None
        self._tokens = _create(GENERATED_TOKENS) if stage == "generate" else None
        self._first_token = _create(TIME_TO_FIRST_TOKEN) if stage == "generate" else None

    @contextmanager
    def call(self) -> Iterator[None]:
        """Counts and times the block as one call; an exception leaving it is counted
        by type and re-raised."""
        start = time.perf_counter()
        try:
            yield
        except BaseException as error:
            self._errors.inc(tags={"error_type": error_type(error)})
            raise
        finally:
            self._requests.inc()
            self._latency.observe(time.perf_counter() - start)

    def candidates(self, count: int) -> None:
        if self._candidates is not None:
            self._candidates.observe(count)

    def top_score(self, relevance: float) -> None:
        if self._top_score is not None:
            self._top_score.observe(relevance)

    def tokens(self, count: int) -> None:
        if self._tokens is not None and count > 0:
            self._tokens.inc(count)

    def first_token(self, seconds: float) -> None:
        if self._first_token is not None:
            self._first_token.observe(seconds)


class IngressMetrics:
    """What the ingress records about the requests it answers."""

    def __init__(self) -> None:
        self._requests = _create(REQUESTS)
        self._latency = _create(REQUEST_LATENCY)
        self._errors = _create(REQUEST_ERRORS)
        self._degraded = _create(DEGRADED_ANSWERS)

    def request(self, endpoint: Endpoint, status: int, seconds: float) -> None:
        self._requests.inc(tags={"endpoint": endpoint, "status": str(status)})
        self._latency.observe(seconds, tags={"endpoint": endpoint})

    def error(self, error_type: str) -> None:
        self._errors.inc(tags={"error_type": error_type})

    def degraded(self, missing_stage: str) -> None:
        self._degraded.inc(tags={"missing_stage": missing_stage})


_ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/rerank": "rerank",
    "/rerank": "rerank",
    "/v1/models": "models",
    "/healthz": "health",
}


def endpoint_of(path: str) -> Endpoint:
    """The endpoint label of a request path below the application's route prefix."""
    return _ENDPOINTS.get(path.rstrip("/") or "/", "other")
