"""Broken and hostile input on every endpoint: a clear JSON 4xx (or a clean answer),
nothing logged as an error, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.generator.prompting import PromptTooLongError
from deployments.generator.protocol import GeneratedText, GenerationRequest
from deployments.ingress.app import create_app
from deployments.ingress.chat.protocol import ChatCompletionRequest
from deployments.ingress.config import IngressConfig
from deployments.ingress.deadline import Deadline
from tests.support import RETRIEVAL, local_stages, parse_sse

CONFIG = IngressConfig()
CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
RERANK = "/v1/rerank"


def ask(content: Any, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture(scope="module")
def client(demo_index: Path) -> Iterator[TestClient]:
    with TestClient(create_app(local_stages(demo_index), CONFIG, RETRIEVAL)) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.INFO):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


RAW_BODIES = [
    b"",
    b"{",
    b'{"messages": [',
    b"null",
    b"[]",
    b'"text"',
    b"42",
    b"\xff\xfe\x00{",
    b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
    b'{"messages": [{"role": "user", "content": "a"}]}\x00garbage',
    b'{"input": NaN}',
    b'{"query": "a", "documents": ["a"], "top_n": 1e999}',
]


@pytest.mark.parametrize("path", [CHAT, EMBED, RERANK])
@pytest.mark.parametrize("raw", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_bodies_that_are_not_the_right_json_get_400(
    client: TestClient, path: str, raw: bytes
) -> None:
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


LONE_SURROGATE = '"\\ud800x"'
CHAT_CASES: list[tuple[object, int, str]] = [
    ({}, 400, "messages: Field required"),
    ({"messages": "x"}, 400, "messages"),
    ({"messages": [1]}, 400, "messages.0"),
    ({"messages": [{"content": "x"}]}, 400, "role"),
    ({"messages": [{"role": 5, "content": "x"}]}, 400, "role"),
    (ask(5), 400, "content"),
    (ask([{"type": "image_url", "image_url": {"url": "http://x"}}]), 400, "content"),
    (ask(""), 400, "non-empty user message"),
    (ask("   "), 400, "non-empty user message"),
    (ask("\n\t\u3000 "), 400, "non-empty user message"),
    (ask("x" * 1_000_000), 400, "the limit is 16000"),
    ({"messages": [{"role": "user", "content": "x"}] * 10_000}, 400, "at most 512 messages"),
    (ask("x", model="gpt-4o"), 404, "does not exist"),
    (ask("x", max_tokens=-1), 400, "max_tokens"),
    (ask("x", max_tokens=0), 400, "max_tokens"),
    (ask("x", max_tokens=10**30), 400, "max_tokens must be at most"),
    (ask("x", max_tokens=1.5), 400, "max_tokens"),
    (ask("x", max_tokens="many"), 400, "max_tokens"),
    (ask("x", max_completion_tokens=-5), 400, "max_completion_tokens"),
    (ask("x", temperature="hot"), 400, "temperature"),
    (ask("x", top_p=0), 400, "top_p"),
    (ask("x", n=2), 400, "n:"),
    (ask("x", stream=[]), 400, "stream"),
    (ask("x", stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    (ask("x", rag={"top_k": 0}), 400, "rag.top_k"),
    (ask("x", rag={"top_k": 10**6}), 400, "rag.top_k"),
    (ask("x", rag={"top_n": -1}), 400, "rag.top_n"),
    (ask("x", rag={"nprobe": 0}), 400, "rag.nprobe"),
    (ask("x", rag={"ef_search": "many"}), 400, "rag.ef_search"),
    (ask("x", rag={"index": "wikipedia"}), 400, "rag.index"),
]


@pytest.mark.parametrize(("payload", "status", "fragment"), CHAT_CASES)
def test_bad_chat_requests(client: TestClient, payload: object, status: int, fragment: str) -> None:
    assert isinstance(payload, dict)
    variants = [payload] if "stream" in payload else [payload, {**payload, "stream": True}]
    for body in variants:
        response = client.post(CHAT, json=body)
        assert response.status_code == status, response.text
        assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (CHAT, '{"messages": [{"role": "user", "content": §}]}'),
        (CHAT, '{"messages": [{"role": "user", "content": [{"type": "text", "text": §}]}]}'),
        (CHAT, '{"messages": [{"role": "user", "content": "a"}], "stop": [§]}'),
        (CHAT, '{"model": §, "messages": [{"role": "user", "content": "a"}]}'),
        (EMBED, '{"input": §}'),
        (EMBED, '{"input": ["ok", §]}'),
        (RERANK, '{"query": §, "documents": ["a"]}'),
        (RERANK, '{"query": "a", "documents": [{"text": §}]}'),
    ],
)
def test_unpaired_surrogates_are_refused(client: TestClient, path: str, template: str) -> None:
    raw = template.replace("§", LONE_SURROGATE).encode()
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "invalid Unicode" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "text", ["\x00", "\x00\x01\x1f\x7f", "香川\x00県\u200b\ufeff", "\u202e県庁"]
)
def test_control_characters_get_a_clean_answer(client: TestClient, text: str) -> None:
    response = client.post(CHAT, json=ask(text))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]
    assert client.post(EMBED, json={"input": text}).status_code == 200
    assert client.post(RERANK, json={"query": text, "documents": [text]}).status_code == 200


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({}, 400),
        ({"input": None}, 400),
        ({"input": []}, 400),
        ({"input": [""]}, 400),
        ({"input": "   "}, 400),
        ({"input": [1, 2]}, 400),
        ({"input": {"text": "a"}}, 400),
        ({"input": ["a"] * 3000}, 400),
        ({"input": "x" * 1_000_000}, 400),
        ({"input": "a", "model": "text-embedding-3-large"}, 404),
        ({"input": "a", "encoding_format": "int8"}, 400),
        ({"input": "a", "dimensions": -1}, 400),
        ({"input": "a", "dimensions": 10**12}, 400),
        ({"input": "a", "input_type": "both"}, 400),
    ],
)
def test_bad_embedding_requests(client: TestClient, payload: object, status: int) -> None:
    response = client.post(EMBED, json=payload)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({}, 400),
        ({"documents": ["a"]}, 400),
        ({"query": "a"}, 400),
        ({"query": "", "documents": ["a"]}, 400),
        ({"query": " \u3000", "documents": ["a"]}, 400),
        ({"query": "a", "documents": []}, 400),
        ({"query": "a", "documents": [""]}, 400),
        ({"query": "a", "documents": "a"}, 400),
        ({"query": "a", "documents": [{"txt": "a"}]}, 400),
        ({"query": "a", "documents": [None]}, 400),
        ({"query": "a", "documents": ["a"] * 3000}, 400),
        ({"query": "x" * 1_000_000, "documents": ["a"]}, 400),
        ({"query": "a", "documents": ["a"], "top_n": 0}, 400),
        ({"query": "a", "documents": ["a"], "top_n": -3}, 400),
        ({"query": "a", "documents": ["a"], "model": "bge-reranker-v2"}, 404),
    ],
)
def test_bad_rerank_requests(client: TestClient, payload: object, status: int) -> None:
    response = client.post(RERANK, json=payload)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_an_absurd_top_n_returns_every_document(client: TestClient) -> None:
    body = client.post(RERANK, json={"query": "a", "documents": ["a", "b"], "top_n": 10**12})
    assert body.status_code == 200 and len(body.json()["results"]) == 2


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v1/models", 405),
        ("DELETE", "/v1/models", 405),
        ("POST", "/healthz", 405),
        ("PUT", CHAT, 405),
        ("GET", EMBED, 405),
        ("GET", "/v1/models/ja-rag/../../etc/passwd", 404),
        ("GET", "/v2/chat/completions", 404),
    ],
)
def test_wrong_routes_and_methods_are_json(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert response.status_code == status and response.json()["error"]["message"]


def test_models_and_health_ignore_junk_in_the_request(client: TestClient) -> None:
    for path in ("/v1/models", "/healthz"):
        response = client.request(
            "GET", path, params={"x": "\x00<script>"}, content=b"\xff{", headers={"X-Junk": "\t"}
        )
        assert response.status_code == 200


class _Endless:
    """A generator engine that streams until stopped, and says whether it was."""

    model_name = "endless"

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        try:
            while True:
                yield GeneratedText("あ")
                await asyncio.sleep(0.001)
        finally:
            self.closed.set()


def test_a_stream_whose_client_goes_away_stops_the_generation(demo_index: Path) -> None:
    """What Serve does when the HTTP client disconnects: the response body is closed."""
    engine = _Endless()
    app = create_app(local_stages(demo_index, generator=engine), CONFIG, RETRIEVAL)

    async def scenario() -> list[Any]:
        service = app.state.chat
        deadline = Deadline.after(30)
        request = ChatCompletionRequest.model_validate(ask("香川県の県庁所在地は？", stream=True))
        chat = await service.prepare(request, deadline)
        answer = await service.start(chat, deadline)
        events = service.stream(chat, answer, False, deadline)
        received = [await anext(events) for _ in range(5)]
        await events.aclose()
        await asyncio.wait_for(engine.closed.wait(), 5)
        return received

    received = asyncio.run(scenario())
    # The pieces that reached the Ingress together travel as one event.
    assert set(parse_sse("".join(received))[1]["choices"][0]["delta"]["content"]) == {"あ"}


class _TooLong:
    """A generator whose model cannot fit the conversation, as the vLLM engine refuses it."""

    model_name = "too-long"

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        raise PromptTooLongError("the conversation needs 3000 prompt tokens; at most 960 fit")
        yield GeneratedText("")  # an async generator, as engines are


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_too_long_for_the_model_is_the_clients_error(
    demo_index: Path, stream: bool
) -> None:
    app = create_app(local_stages(demo_index, generator=_TooLong()), CONFIG, RETRIEVAL)
    with TestClient(app) as client:
        response = client.post(CHAT, json=ask("香川県の県庁所在地は？", stream=stream))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "3000 prompt tokens" in error["message"] and error["code"] == "invalid_request"
        assert client.get("/healthz").status_code == 200


def test_the_server_keeps_serving_after_all_that(client: TestClient) -> None:
    response = client.post(CHAT, json=ask("沖縄県の県庁所在地は？"))
    assert response.status_code == 200
    assert "那覇市" in response.json()["choices"][0]["message"]["content"]
    assert json.loads(client.get("/healthz").text)["status"] == "ok"
