"""The openai generator backend relaying to a real OpenAI-compatible server: this
project's own /v1/chat/completions (the demo graph's plain generator, model
'extractive'), deployed in the same cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from ray import serve

from deployments.generator.config import NO_ANSWER_JA
from serve.app import build_app
from tests.integration.conftest import ServeCluster
from tests.support import parse_sse

pytestmark = pytest.mark.integration

QUESTION = {"messages": [{"role": "user", "content": "香川県の県庁所在地はどこですか？"}]}


@pytest.fixture(scope="module")
def relay_graph(serve_cluster: ServeCluster, demo_graph: str, demo_index: Path) -> Iterator[str]:
    args = {
        "index": {"path": str(demo_index)},
        "generator": {
            "backend": "openai",
            "base_url": f"{demo_graph}/v1",
            "model": "extractive",
            "served_model_name": "relayed-extractive",
            "api_key": "not-needed-by-this-upstream",
        },
    }
    serve.run(build_app(args), name="relay", route_prefix="/relay")
    try:
        yield serve_cluster.url("/relay")
    finally:
        serve.delete("relay")


def test_answers_stream_through_from_the_upstream(relay_graph: str, demo_graph: str) -> None:
    with requests.post(
        f"{relay_graph}/v1/chat/completions",
        json={**QUESTION, "stream": True, "stream_options": {"include_usage": True}},
        stream=True,
        timeout=60,
    ) as response:
        assert response.status_code == 200
        events = parse_sse("".join(c.decode() for c in response.iter_content(chunk_size=None)))
    contents = [e["choices"][0]["delta"].get("content") for e in events[:-2] if e["choices"]]
    pieces = [c for c in contents if c]
    # The upstream's plain generator gets the RAG prompt without passages of its own, so
    # it says it found nothing. It makes its 4-character pieces all at once, so the
    # upstream streams them as one event; its usage still counts every piece.
    assert "".join(pieces) == NO_ANSWER_JA
    assert len(pieces) == 1
    finish = events[-3]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["sources"], "retrieval ran here, before the upstream was asked"
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == -(-len(NO_ANSWER_JA) // 4), "the upstream's count"
    assert usage["prompt_tokens"] > 200, "the upstream counted the passages we sent"


def test_the_relayed_model_is_listed_and_healthy(relay_graph: str) -> None:
    models = requests.get(f"{relay_graph}/v1/models", timeout=30).json()["data"]
    assert {m["id"]: m["kind"] for m in models}["relayed-extractive"] == "chat"
    health = requests.get(f"{relay_graph}/healthz", timeout=30).json()
    assert health["stages"]["generator"]["status"] == "ok"
