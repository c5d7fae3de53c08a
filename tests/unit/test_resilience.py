"""Deadlines, shedding and degraded answers in the HTTP layer, with stages made to fail.

The stages are the built-in engines in-process, behind a StageClient that injects
the faults a graph sees: a stage down, full, hung, or dying mid-answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray

from deployments.generator.deployment import STARTED
from deployments.generator.protocol import GeneratedText, GenerationRequest
from deployments.ingress.app import create_app
from deployments.ingress.config import IngressConfig
from deployments.ingress.stages import StageClient, StageOverloaded, StageUnavailable
from deployments.passage import Hit
from deployments.reranker.protocol import RerankScores
from deployments.retriever.filters import MetadataFilter
from deployments.retriever.search_parameters import SearchParameters
from tests.support import RETRIEVAL, local_stages, parse_sse

QUESTION = "香川県の県庁所在地はどこですか？"


class FaultyStages:
    """The stages in process plus faults, set per stage in ``faults``:

    down: fails as when its replicas died; full: its queue is full; hang: never
    answers (the generator: after a replica took the request); unassigned: no
    generator replica takes the request; die-mid: the generator dies after its
    first piece; die-mid-once: the same, once.
    """

    def __init__(self, inner: StageClient) -> None:
        self.inner = inner
        self.faults: dict[str, str] = {}
        self.cancelled: list[str] = []
        self.calls: dict[str, int] = {}

    async def _fault(self, stage: str) -> None:
        self.calls[stage] = self.calls.get(stage, 0) + 1
        fault = self.faults.get(stage)
        if fault == "down":
            raise StageUnavailable(stage, "ActorDiedError")
        if fault == "full":
            raise StageOverloaded(stage, 503, 2.0)
        if fault in ("hang", "unassigned"):
            await self._hang(stage)

    async def _hang(self, stage: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(stage)
            raise

    async def retrieve(
        self,
        query: str,
        top_k: int,
        knowledge_base: str | None = None,
        where: MetadataFilter | None = None,
        params: SearchParameters | None = None,
    ) -> list[Hit]:
        await self._fault("retriever")
        return await self.inner.retrieve(query, top_k, knowledge_base, where, params)

    async def knowledge_bases(self) -> list[dict[str, Any]]:
        await self._fault("retriever")
        return await self.inner.knowledge_bases()

    async def rerank(self, query: str, hits: list[Hit], top_n: int) -> list[Hit]:
        await self._fault("reranker")
        return await self.inner.rerank(query, hits, top_n)

    async def score(self, query: str, documents: list[str]) -> RerankScores:
        await self._fault("reranker")
        return await self.inner.score(query, documents)

    async def embed(self, texts: list[str], kind: Any) -> NDArray[np.float32]:
        await self._fault("embedder")
        return await self.inner.embed(texts, kind)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        fault = self.faults.get("generator")
        if fault != "hang":
            await self._fault("generator")
        yield STARTED
        if fault == "hang":
            await self._hang("generator")
        first = True
        async for piece in self.inner.generate(request):
            if not first and fault in ("die-mid", "die-mid-once"):
                if fault == "die-mid-once":
                    self.faults.pop("generator")
                raise StageUnavailable("generator", "ActorDiedError")
            first = first and not piece.text
            yield piece

    async def generate_chunks(
        self, request: GenerationRequest
    ) -> AsyncIterator[list[GeneratedText]]:
        async for piece in self.generate(request):
            yield [piece]

    async def describe(self, stage: str) -> dict[str, Any]:
        return await self.inner.describe(stage)


CONFIG = IngressConfig(reranker_timeout_s=0.3, generator_start_timeout_s=0.3, retry_after_s=1)


@pytest.fixture(scope="module")
def stages(demo_index: Path) -> FaultyStages:
    return FaultyStages(local_stages(demo_index))


@pytest.fixture
def client(stages: FaultyStages) -> Iterator[TestClient]:
    stages.faults.clear()
    stages.cancelled.clear()
    with TestClient(create_app(stages, CONFIG, RETRIEVAL)) as test_client:
        yield test_client


def ask(text: str = QUESTION, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_hung_generator_ends_with_504_is_cancelled_and_the_next_request_succeeds(
    client: TestClient, stages: FaultyStages
) -> None:
    stages.faults["generator"] = "hang"
    response = client.post("/v1/chat/completions", json=ask(), headers={"X-Request-Timeout": "0.5"})
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "deadline_exceeded" and error["type"] == "timeout_error"
    assert "0.5 s" in error["message"] and "generator" in error["message"]
    assert stages.cancelled == ["generator"]
    stages.faults.clear()
    assert client.post("/v1/chat/completions", json=ask()).status_code == 200


@pytest.mark.parametrize(("stage", "path"), [("retriever", "chat"), ("embedder", "embeddings")])
def test_every_stage_call_is_under_the_deadline(
    client: TestClient, stages: FaultyStages, stage: str, path: str
) -> None:
    stages.faults[stage] = "hang"
    body = ask() if path == "chat" else {"input": "札幌"}
    endpoint = "/v1/chat/completions" if path == "chat" else "/v1/embeddings"
    response = client.post(endpoint, json=body, headers={"X-Request-Timeout": "0.3"})
    assert response.status_code == 504 and stage in response.json()["error"]["message"]
    assert stages.cancelled == [stage]


def test_hung_stream_gets_504_before_it_begins(client: TestClient, stages: FaultyStages) -> None:
    stages.faults["generator"] = "hang"
    response = client.post(
        "/v1/chat/completions", json=ask(stream=True), headers={"X-Request-Timeout": "0.3"}
    )
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", ""])
def test_bad_deadline_header_is_a_400(client: TestClient, value: str) -> None:
    response = client.post("/v1/chat/completions", json=ask(), headers={"X-Request-Timeout": value})
    assert response.status_code == 400
    assert "X-Request-Timeout" in response.json()["error"]["message"]


def test_a_longer_deadline_than_the_servers_is_lowered_to_it(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json=ask(), headers={"X-Request-Timeout": "1e9"})
    assert response.status_code == 200


@pytest.mark.parametrize("fault", ["down", "hang", "full"])
def test_without_the_reranker_the_answer_uses_retrieval_order_and_says_so(
    client: TestClient, stages: FaultyStages, fault: str
) -> None:
    stages.faults["reranker"] = fault
    response = client.post("/v1/chat/completions", json=ask())
    assert response.status_code == 200
    assert response.headers["X-RAG-Degraded"] == "reranker"
    body = response.json()
    assert body["degraded"] == ["reranker"] and "retriever's order" in body["notice"]
    sources = body["sources"]
    assert len(sources) == RETRIEVAL.top_n
    assert all(s["rerank_score"] is None for s in sources)
    scores = [s["score"] for s in sources]
    assert scores == sorted(scores, reverse=True)
    assert body["choices"][0]["message"]["content"]


def test_a_healthy_answer_is_not_degraded(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json=ask())
    assert "X-RAG-Degraded" not in response.headers
    assert response.json()["degraded"] == [] and response.json()["notice"] is None


@pytest.mark.parametrize("fault", ["down", "unassigned"])
def test_without_the_generator_the_sources_come_with_a_clear_message(
    client: TestClient, stages: FaultyStages, fault: str
) -> None:
    stages.faults["generator"] = fault
    response = client.post("/v1/chat/completions", json=ask())
    assert response.status_code == 200 and response.headers["X-RAG-Degraded"] == "generator"
    body = response.json()
    assert body["choices"][0]["message"]["content"] == CONFIG.generator_unavailable_message
    assert body["degraded"] == ["generator"] and "no answer was generated" in body["notice"]
    assert any(s["passage_id"] == "kagawa-overview" for s in body["sources"])


def test_without_the_generator_a_stream_still_ends_with_the_sources(
    client: TestClient, stages: FaultyStages
) -> None:
    stages.faults["generator"] = "down"
    response = client.post("/v1/chat/completions", json=ask(stream=True))
    assert response.status_code == 200 and response.headers["X-RAG-Degraded"] == "generator"
    events = parse_sse(response.text)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == CONFIG.generator_unavailable_message
    last = events[-2]
    assert last["degraded"] == ["generator"] and last["sources"]
    assert last["choices"][0]["finish_reason"] == "stop"


def test_both_stages_down_are_both_reported(client: TestClient, stages: FaultyStages) -> None:
    stages.faults.update(reranker="down", generator="down")
    body = client.post("/v1/chat/completions", json=ask()).json()
    assert body["degraded"] == ["reranker", "generator"] and len(body["sources"]) == 5


def test_a_full_generator_sheds_with_503_and_retry_after(
    client: TestClient, stages: FaultyStages
) -> None:
    stages.faults["generator"] = "full"
    for stream in (False, True):
        response = client.post("/v1/chat/completions", json=ask(stream=stream))
        assert response.status_code == 503 and response.headers["Retry-After"] == "2"
        error = response.json()["error"]
        assert error["code"] == "overloaded" and error["type"] == "service_unavailable"
        assert "generator" in error["message"]


@pytest.mark.parametrize(
    ("stage", "path", "body"),
    [
        ("embedder", "/v1/embeddings", {"input": "札幌"}),
        ("reranker", "/v1/rerank", {"query": "高松", "documents": ["高松市"]}),
        ("retriever", "/v1/chat/completions", ask()),
    ],
)
def test_provider_endpoints_answer_503_json_when_their_stage_is_down(
    client: TestClient, stages: FaultyStages, stage: str, path: str, body: dict[str, object]
) -> None:
    stages.faults[stage] = "down"
    response = client.post(path, json=body)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "stage_unavailable"


def test_a_generator_dying_mid_stream_ends_it_with_an_error_event(
    client: TestClient, stages: FaultyStages
) -> None:
    stages.faults["generator"] = "die-mid"
    response = client.post("/v1/chat/completions", json=ask(stream=True))
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "stage_unavailable"


def test_a_generator_dying_before_anything_was_sent_is_asked_again(
    client: TestClient, stages: FaultyStages
) -> None:
    stages.faults["generator"] = "die-mid-once"
    body = client.post("/v1/chat/completions", json=ask()).json()
    assert body["degraded"] == [] and "高松市" in body["choices"][0]["message"]["content"]


def test_a_generator_dying_every_time_degrades_the_answer(
    client: TestClient, stages: FaultyStages
) -> None:
    stages.faults["generator"] = "die-mid"
    body = client.post("/v1/chat/completions", json=ask()).json()
    assert body["degraded"] == ["generator"] and body["sources"]
