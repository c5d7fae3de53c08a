"""The HTTP API over in-process engines: request shapes, errors and streaming."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient

from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.generator.extractive import ExtractiveGenerator
from deployments.ingress.app import create_app
from deployments.ingress.chat.protocol import ChatCompletion
from deployments.ingress.config import IngressConfig
from tests.support import RETRIEVAL, local_stages, parse_sse

QUESTION = "香川県の県庁所在地はどこですか？"


@pytest.fixture(scope="module")
def client(demo_index: Path) -> Iterator[TestClient]:
    app = create_app(local_stages(demo_index), IngressConfig(max_input_chars=2000), RETRIEVAL)
    with TestClient(app) as test_client:
        yield test_client


def ask(text: str, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_chat_answers_from_the_right_passage(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json=ask(QUESTION))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    # Every field of the schema, written as FastAPI's encoder would.
    assert jsonable_encoder(ChatCompletion.model_validate(body)) == body
    answer = body["choices"][0]["message"]["content"]
    assert body["object"] == "chat.completion" and body["model"] == "ja-rag"
    assert "高松市" in answer
    assert body["choices"][0]["finish_reason"] == "stop"
    sources = body["sources"]
    cited = [s for s in sources if s["cited"]]
    assert cited and cited[0]["passage_id"] == "kagawa-overview"
    assert f"[{cited[0]['index']}]" in answer
    assert [s["index"] for s in sources] == list(range(1, len(sources) + 1))
    assert body["usage"]["completion_tokens"] > 0


def test_chat_stream_is_openai_sse_with_sources_last(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat/completions", json=ask(QUESTION, stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.read().decode())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "高松市" in text
    # The built-in engine makes the whole answer at once: it travels as one event.
    assert sum("content" in c["choices"][0]["delta"] for c in chunks[1:]) == 1
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert any(s["passage_id"] == "kagawa-overview" and s["cited"] for s in last["sources"])
    assert all("sources" not in c for c in chunks[:-1])


def test_pieces_made_apart_are_streamed_apart(demo_index: Path) -> None:
    paced = ExtractiveGenerator(ExtractiveGeneratorConfig(piece_delay_s=0.02))
    app = create_app(local_stages(demo_index, paced), IngressConfig(), RETRIEVAL)
    with TestClient(app) as paced_client:
        body = paced_client.post("/v1/chat/completions", json=ask(QUESTION, stream=True)).text
    contents = [c["choices"][0]["delta"].get("content") for c in parse_sse(body)[1:-2]]
    assert len(contents) > 3 and all(contents), "the answer arrives in several pieces"
    assert "高松市" in "".join(contents)


def test_stream_usage_chunk_when_asked(client: TestClient) -> None:
    body = ask(QUESTION, stream=True, stream_options={"include_usage": True})
    events = parse_sse(client.post("/v1/chat/completions", json=body).text)
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0


def test_max_tokens_cuts_the_answer(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=ask(QUESTION, max_tokens=2)).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_unrelated_question_says_nothing_was_found(client: TestClient) -> None:
    body = client.post(
        "/v1/chat/completions", json=ask("量子コンピュータの誤り訂正符号とは？")
    ).json()
    assert body["choices"][0]["message"]["content"] == ExtractiveGeneratorConfig().no_answer_message


def test_rag_options_change_the_number_of_sources(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=ask(QUESTION, rag={"top_n": 2})).json()
    assert len(body["sources"]) == 2


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"messages": []}, 400, "messages"),
        ({}, 400, "messages: Field required"),
        (ask("   "), 400, "non-empty user message"),
        ({"messages": [{"role": "system", "content": "x"}]}, 400, "user message"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
        (ask("x", model="gpt-4"), 404, "model 'gpt-4' does not exist"),
        (ask("x", max_tokens=0), 400, "max_tokens"),
        (ask("x", max_tokens=10**9), 400, "max_tokens must be at most"),
        (ask("x", temperature=-1), 400, "temperature"),
        (ask("x", n=3), 400, "n:"),
        (ask("x" * 2001), 400, "the limit is 2000"),
        (ask("x", rag={"top_n": 0}), 400, "rag.top_n"),
    ],
)
def test_bad_chat_requests_get_json_errors(
    client: TestClient, payload: dict[str, object], status: int, fragment: str
) -> None:
    response = client.post("/v1/chat/completions", json=payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert fragment in error["message"]
    assert error["type"] in {"invalid_request_error", "not_found_error"}


def test_malformed_json_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    assert client.get("/v1/nothing").json()["error"]["type"] == "not_found_error"
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405 and "error" in response.json()


def test_plain_chat_with_the_generator_model(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=ask(QUESTION, model="extractive")).json()
    assert body["sources"] == []
    assert body["choices"][0]["message"]["content"] == ExtractiveGeneratorConfig().no_answer_message


def test_embeddings_float_and_base64_agree(client: TestClient) -> None:
    texts = ["札幌市", "那覇市の気候"]
    floats = client.post("/v1/embeddings", json={"input": texts}).json()
    encoded = client.post(
        "/v1/embeddings", json={"input": texts, "encoding_format": "base64"}
    ).json()
    assert floats["model"] == encoded["model"] and floats["object"] == "list"
    for plain, packed in zip(floats["data"], encoded["data"], strict=True):
        vector = np.frombuffer(base64.b64decode(packed["embedding"]), dtype="<f4")
        assert np.allclose(vector, plain["embedding"])
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_embeddings_query_and_passage_sides_differ(client: TestClient) -> None:
    text = "香川県の県庁所在地は高松市である。高松市は港町である。"
    query = client.post("/v1/embeddings", json={"input": text, "input_type": "query"}).json()
    passage = client.post("/v1/embeddings", json={"input": text}).json()
    assert query["data"][0]["embedding"] != passage["data"][0]["embedding"]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"input": []}, 400),
        ({"input": [""]}, 400),
        ({"input": [1, 2, 3]}, 400),
        ({"input": "x", "model": "text-embedding-3-small"}, 404),
        ({"input": "x", "dimensions": 3}, 400),
        ({"input": "x", "encoding_format": "int8"}, 400),
    ],
)
def test_bad_embedding_requests(
    client: TestClient, payload: dict[str, object], status: int
) -> None:
    response = client.post("/v1/embeddings", json=payload)
    assert response.status_code == status and "error" in response.json()


def test_rerank_orders_documents_and_maps_relevance(client: TestClient) -> None:
    documents = ["沖縄県の県庁所在地は那覇市である。", "香川県の県庁所在地は高松市である。", "雪"]
    for path in ("/v1/rerank", "/rerank"):
        body = client.post(
            path, json={"query": QUESTION, "documents": documents, "top_n": 2}
        ).json()
        assert [r["index"] for r in body["results"]] == [1, 0]
        assert body["results"][0]["document"]["text"] == documents[1]
        scores = [r["relevance_score"] for r in body["results"]]
        assert all(0 <= s <= 1 for s in scores) and scores[0] >= scores[1]


def test_rerank_accepts_text_objects_and_can_omit_documents(client: TestClient) -> None:
    body = client.post(
        "/v1/rerank",
        json={"query": "高松", "documents": [{"text": "高松市"}], "return_documents": False},
    ).json()
    assert body["results"][0]["index"] == 0
    assert body["results"][0]["document"] is None


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "", "documents": ["a"]},
        {"query": "q", "documents": []},
        {"query": "q", "documents": ["a"], "top_n": -1},
        {"query": "q", "documents": ["a"], "model": "bge-reranker"},
        {"documents": ["a"]},
    ],
)
def test_bad_rerank_requests(client: TestClient, payload: dict[str, object]) -> None:
    response = client.post("/v1/rerank", json=payload)
    assert 400 <= response.status_code < 500 and "error" in response.json()


def test_models_and_health(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    kinds = {m["kind"]: m["id"] for m in models["data"]}
    assert kinds["rag"] == "ja-rag" and kinds["chat"] == "extractive"
    assert set(kinds) == {"rag", "chat", "embedding", "rerank"}
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert set(body["stages"]) == {"embedder", "retriever", "reranker", "generator"}
    assert body["index"]["passages"] == 188


def test_search_settings_of_a_request_are_accepted(client: TestClient) -> None:
    body = ask(QUESTION, rag={"nprobe": 16, "ef_search": 64, "top_n": 2})
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["sources"]) == 2
