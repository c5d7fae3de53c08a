"""One replica per stage, engines a test can hold, hang or wedge: backpressure,
deadlines, degraded answers, health checks, bad input and secrets, over real HTTP."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from ray import serve

from deployments.ingress.config import AuthConfig, IngressConfig
from deployments.retriever.config import IndexConfig
from serve.app import build_graph
from serve.config import AppConfig
from tests.reliability.conftest import (
    API_KEY,
    API_KEY_ENV,
    AUTH,
    Cluster,
    Report,
    Row,
    ask,
    wait_for_answer,
    wait_until_running,
)
from tests.reliability.engines import (
    HOLD_S,
    ScriptedGenerator,
    SlowStartReranker,
    WedgingEmbedder,
)
from tests.reliability.load import Tally, send, steady_load

pytestmark = pytest.mark.reliability

APP = "faults"
QUESTION = "香川県の県庁所在地はどこですか？"
GENERATOR_QUEUE = 2
"""max_ongoing_requests and max_queued_requests of the Generator here."""

CONFIG = IngressConfig(
    request_timeout_s=30,
    reranker_timeout_s=2,
    # Above the wait of a request queued behind held ones; below a killed generator's
    # time to come back (SLOW_START_S).
    generator_start_timeout_s=HOLD_S + 2,
    auth=AuthConfig(api_key_env=(API_KEY_ENV,)),
)
SLOW_START_S = 14
FAST_HEALTH = {"health_check_period_s": 1, "health_check_timeout_s": 2}
OPTIONS = {
    "Ingress": {"graceful_shutdown_timeout_s": 5},
    "Embedder": {**FAST_HEALTH, "graceful_shutdown_timeout_s": 1},
    "Retriever": FAST_HEALTH,
    "Reranker": FAST_HEALTH,
    "Generator": {
        **FAST_HEALTH,
        "max_ongoing_requests": GENERATOR_QUEUE,
        "max_queued_requests": GENERATOR_QUEUE,
        "graceful_shutdown_timeout_s": 5,
    },
}


@pytest.fixture(scope="module")
def graph(cluster: Cluster, demo_index: Path) -> Iterator[str]:
    app = build_graph(
        AppConfig(index=IndexConfig(path=str(demo_index)), ingress=CONFIG),
        engines={
            "generator": ScriptedGenerator,
            "reranker": SlowStartReranker,
            "embedder": WedgingEmbedder,
        },
        options=OPTIONS,
    )
    serve.run(app, name=APP, route_prefix=f"/{APP}")
    try:
        yield cluster.url(f"/{APP}")
    finally:
        cluster.slow_start_file.unlink(missing_ok=True)
        serve.delete(APP)


def chat(
    url: str, text: str, timeout: float = 60, headers: Mapping[str, str] | None = None
) -> requests.Response:
    return requests.post(
        f"{url}/v1/chat/completions",
        json=ask(text),
        headers={**AUTH, **(headers or {})},
        timeout=timeout,
    )


def generator_stats() -> dict[str, Any]:
    details: dict[str, Any] = (
        serve.get_deployment_handle("Generator", app_name=APP).describe.remote().result()
    )
    return details


def test_a_full_generator_sheds_at_once_and_admitted_requests_finish(
    graph: str, report: Report
) -> None:
    url = f"{graph}/v1/chat/completions"
    tally = Tally()
    capacity = 2 * GENERATOR_QUEUE  # running + queued at the ingress's handle
    with ThreadPoolExecutor(capacity + 8) as pool:
        held = []
        for _ in range(capacity):
            held.append(pool.submit(send, requests.Session(), url, ask(f"[hold] {QUESTION}"), AUTH))
            time.sleep(0.3)  # each reaches the generator before the next is sent
        time.sleep(1.0)
        burst = [pool.submit(send, requests.Session(), url, ask(QUESTION), AUTH) for _ in range(8)]
        burst_outcomes = [f.result() for f in burst]
        held_outcomes = [f.result() for f in held]
    for outcome in burst_outcomes + held_outcomes:
        tally.add(outcome)
    shed = [o for o in burst_outcomes if o.status == 503]
    assert tally.statuses().keys() <= {200, 503}, tally.statuses()
    assert len(shed) >= 6, tally.statuses()
    assert max(o.seconds for o in shed) < 2.0, "shedding must not wait for the queue"
    assert sum(o.status == 200 for o in held_outcomes) >= GENERATOR_QUEUE
    response = requests.post(url, json=ask(QUESTION), headers=AUTH, timeout=30)
    assert response.status_code == 200
    report.add(
        Row(
            "backpressure: generator held busy",
            tally.sent,
            tally.succeeded,
            tally.shed,
            tally.failed,
            notes=f"shed in {max(o.seconds for o in shed):.2f} s at most, JSON + Retry-After",
        )
    )


def test_shed_responses_are_json_with_retry_after(graph: str) -> None:
    url = f"{graph}/v1/chat/completions"
    with ThreadPoolExecutor(2 * GENERATOR_QUEUE + 1) as pool:
        held = []
        for _ in range(2 * GENERATOR_QUEUE):
            body = ask(f"[hold] {QUESTION}")
            held.append(pool.submit(requests.post, url, json=body, headers=AUTH, timeout=60))
            time.sleep(0.3)
        time.sleep(1.0)
        response = requests.post(url, json=ask(QUESTION), headers=AUTH, timeout=30)
        for future in held:
            future.result()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.headers["content-type"] == "application/json", response.text
    error = response.json()["error"]
    assert error["code"] == "overloaded" and "generator" in error["message"]


def test_a_hung_generator_gets_504_its_work_is_cancelled_and_the_next_request_succeeds(
    graph: str, report: Report
) -> None:
    before = generator_stats()["generations_cancelled"]
    start = time.monotonic()
    response = chat(graph, f"[hang] {QUESTION}", headers={"X-Request-Timeout": "2"})
    took = time.monotonic() - start
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "deadline_exceeded" and "generator" in error["message"]
    assert 1.9 < took < 5
    deadline = time.monotonic() + 10
    while generator_stats()["generations_cancelled"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = generator_stats()
    assert stats["generations_cancelled"] == before + 1, stats
    assert stats["generations_in_flight"] == 0, stats
    recovered = time.monotonic()
    assert chat(graph, QUESTION).status_code == 200
    report.add(
        Row(
            "deadline: hung generator (X-Request-Timeout: 2)",
            2,
            1,
            0,
            1,
            time.monotonic() - recovered,
            f"504 after {took:.2f} s (expected); generator cancelled it",
        )
    )


def test_a_streaming_client_that_goes_away_cancels_the_generation(
    graph: str, report: Report
) -> None:
    before = generator_stats()["generations_cancelled"]
    sent = 3
    for _ in range(sent):
        with requests.post(
            f"{graph}/v1/chat/completions",
            json=ask(f"[drip] {QUESTION}", stream=True),
            headers=AUTH,
            stream=True,
            timeout=30,
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            received = [next(lines) for _ in range(6)]
            assert any(line.startswith(b"data: ") for line in received)
        # Leaving the block closes the connection mid-answer.
    deadline = time.monotonic() + 15
    while generator_stats()["generations_cancelled"] < before + sent:
        assert time.monotonic() < deadline, generator_stats()
        time.sleep(0.2)
    assert generator_stats()["generations_in_flight"] == 0
    assert chat(graph, QUESTION).status_code == 200
    report.add(
        Row(
            "streaming clients disconnect mid-answer",
            sent,
            sent,
            0,
            0,
            notes=f"{sent}/{sent} generations cancelled in the generator",
        )
    )


def _serve_logs(cluster: Cluster) -> dict[Path, int]:
    return {p: p.stat().st_size for p in (cluster.session_dir / "logs").rglob("*") if p.is_file()}


def _new_log_text(before: dict[Path, int], cluster: Cluster) -> str:
    text = []
    for path in _serve_logs(cluster):
        with path.open("rb") as f:
            f.seek(before.get(path, 0))
            text.append(f.read().decode("utf-8", "replace"))
    return "".join(text)


CHAT, EMBED, RERANK = "/v1/chat/completions", "/v1/embeddings", "/v1/rerank"


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


def _ask(content: object, **extra: object) -> bytes:
    return _json(ask(content, **extra))  # type: ignore[arg-type]


BAD_REQUESTS: list[tuple[str, str, bytes, int]] = [
    ("POST", CHAT, b"{", 400),
    ("POST", CHAT, b"\xff\xfe\xfd", 400),
    ("POST", CHAT, _ask(5), 400),
    ("POST", CHAT, _json({"messages": []}), 400),
    ("POST", CHAT, _ask("  "), 400),
    ("POST", CHAT, _ask("\ud800"), 400),
    ("POST", CHAT, _ask("a", model="nope"), 404),
    ("POST", CHAT, _ask("a", max_tokens=-1), 400),
    ("POST", CHAT, _ask("a", max_tokens=10**30), 400),
    ("POST", CHAT, _ask("x" * 1_000_000), 400),
    ("POST", CHAT, _json({"messages": [{"role": "user", "content": "x"}] * 10_000}), 400),
    ("POST", CHAT, _ask("x" * (20 << 20)), 413),
    ("POST", EMBED, _json({"input": []}), 400),
    ("POST", EMBED, _json({"input": "a", "model": "text-embedding-3-small"}), 404),
    ("POST", EMBED, _json({"input": [1, 2]}), 400),
    ("POST", RERANK, _json({"query": "a", "documents": ["b"], "top_n": -1}), 400),
    ("POST", RERANK, _json({"query": "", "documents": ["b"]}), 400),
    ("POST", RERANK, _json({"documents": ["b"]}), 400),
    ("POST", "/v1/models", b"", 405),
    ("POST", "/healthz", b"{}", 405),
    ("GET", "/v1/nothing", b"", 404),
]


def test_bad_input_gets_clear_json_4xx_and_nothing_is_logged_as_unhandled(
    graph: str, cluster: Cluster, report: Report
) -> None:
    before = _serve_logs(cluster)
    failures = []
    for method, path, body, status in BAD_REQUESTS:
        response = requests.request(
            method,
            f"{graph}{path}",
            data=body,
            headers={**AUTH, "Content-Type": "application/json"},
            timeout=60,
        )
        ok = response.status_code == status and bool(response.json()["error"]["message"])
        if not ok:
            failures.append((path, body[:60], response.status_code, response.text[:200]))
    # A body sent in chunks, without a length, over the limit.
    chunked = requests.post(
        f"{graph}/v1/embeddings",
        data=(b"x" * (1 << 20) for _ in range(20)),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=60,
    )
    if chunked.status_code != 413:
        failures.append(("chunked", b"", chunked.status_code, chunked.text[:200]))
    # A client that sends half a request and goes away.
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as raw:
        raw.sendall(
            f"POST /{APP}/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Length: 1000\r\n\r\n{{".encode()
        )
    assert failures == []
    assert chat(graph, QUESTION).status_code == 200
    time.sleep(1.0)  # let the replicas flush their logs
    logged = _new_log_text(before, cluster)
    for marker in ("Traceback", "unhandled error", "Request failed"):
        assert marker not in logged, logged[logged.find(marker) - 2000 : logged.find(marker) + 500]
    sent = len(BAD_REQUESTS) + 2
    report.add(
        Row(
            "bad input over HTTP (all endpoints)",
            sent,
            0,
            0,
            len(failures),
            notes=f"{sent - len(failures)}/{sent} clear JSON 4xx; no traceback logged",
        )
    )


def test_without_keys_nothing_but_health_is_served(graph: str) -> None:
    assert requests.get(f"{graph}/healthz", timeout=30).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = requests.get(f"{graph}/v1/models", headers=headers, timeout=30)
        assert response.status_code == 401 and response.json()["error"]["code"]
    assert requests.get(f"{graph}/v1/models", headers=AUTH, timeout=30).status_code == 200


def _degraded_while_down(
    graph: str, cluster: Cluster, deployment: str, stage: str
) -> tuple[Tally, float]:
    """Kill the only replica of ``deployment`` (its replacement starts slowly) under
    steady traffic; returns the traffic and the seconds until answers were whole again."""
    cluster.slow_start_file.write_text(str(SLOW_START_S))
    url = f"{graph}/v1/chat/completions"
    with steady_load(url, lambda i: ask(QUESTION), AUTH, rate_per_s=3, workers=3) as tally:
        time.sleep(1.5)
        killed_at = time.monotonic()
        cluster.kill_replica(APP, deployment)
        time.sleep(4)  # the replacement has read the file by now
        cluster.slow_start_file.unlink()
        wait_until_running(APP, deployment, 1)
        wait_for_answer(url, ask(QUESTION))
        recovery = time.monotonic() - killed_at
        time.sleep(1)
    during = tally.between(killed_at, killed_at + recovery)
    # Nothing fails; while the stage is down its small queue here (GENERATOR_QUEUE)
    # may fill, and the excess is shed with 503 + Retry-After as designed.
    assert tally.failed == 0, tally.statuses()
    assert during.degraded > 0, tally.statuses()
    assert all(o.degraded in ("", stage) for o in tally.outcomes)
    return tally, recovery


def test_reranker_killed_answers_come_in_retrieval_order(
    graph: str, cluster: Cluster, report: Report
) -> None:
    tally, recovery = _degraded_while_down(graph, cluster, "Reranker", "reranker")
    report.add(
        Row(
            "reranker's only replica killed",
            tally.sent,
            tally.succeeded,
            tally.shed,
            tally.failed,
            recovery,
            f"{tally.degraded} answered in retrieval order (degraded: reranker)",
        )
    )


def test_generator_killed_sources_still_come_back(
    graph: str, cluster: Cluster, report: Report
) -> None:
    tally, recovery = _degraded_while_down(graph, cluster, "Generator", "generator")
    report.add(
        Row(
            "generator's only replica killed",
            tally.sent,
            tally.succeeded,
            tally.shed,
            tally.failed,
            recovery,
            f"{tally.degraded} answered with sources only (degraded: generator)",
        )
    )


def test_a_wedged_embedder_is_replaced_by_its_health_check(
    graph: str, cluster: Cluster, report: Report
) -> None:
    wedged = cluster.replicas(APP, "Embedder")[0].actor_id
    start = time.monotonic()
    response = chat(graph, f"[wedge] {QUESTION}", headers={"X-Request-Timeout": "2"})
    assert response.status_code == 504
    tally = Tally()
    session = requests.Session()
    while time.monotonic() - start < 90:
        outcome = send(
            session,
            f"{graph}/v1/chat/completions",
            ask(QUESTION),
            {**AUTH, "X-Request-Timeout": "2"},
        )
        tally.add(outcome)
        if outcome.status == 200:
            break
        time.sleep(0.5)
    recovery = time.monotonic() - start
    assert tally.outcomes[-1].status == 200, tally.statuses()
    assert all(o.status in (200, 504) for o in tally.outcomes), tally.statuses()
    assert wedged not in {a.actor_id for a in cluster.replicas(APP, "Embedder")}
    report.add(
        Row(
            "embedder wedged (health check replaces it)",
            tally.sent + 1,
            tally.succeeded,
            tally.shed,
            tally.failed + 1,
            recovery,
            "504 while wedged (deadline 2 s), then a new replica answers",
        )
    )


def test_the_api_key_is_never_logged(graph: str, cluster: Cluster, report: Report) -> None:
    assert chat(graph, QUESTION).status_code == 200
    time.sleep(1.0)
    leaks = []
    for path in (cluster.session_dir / "logs").rglob("*"):
        if path.is_file() and API_KEY.encode() in path.read_bytes():
            leaks.append(path.name)
    assert leaks == []
    report.add(Row("API key never in any Ray or Serve log", 0, 0, 0, 0, notes="0 files hold it"))
