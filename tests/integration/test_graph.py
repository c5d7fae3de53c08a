"""The five-deployment graph on a real local Ray cluster, over real HTTP."""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest
import requests
from ray import serve

from deployments.embedder.config import HashingEmbedderConfig
from tests.support import demo_questions, parse_sse

pytestmark = pytest.mark.integration

QUESTION = "香川県の県庁所在地はどこですか？"


def ask(text: str, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_every_stage_is_its_own_healthy_deployment(demo_graph: str) -> None:
    status = serve.status().applications["demo"]
    assert status.status == "RUNNING"
    assert set(status.deployments) == {"Ingress", "Embedder", "Retriever", "Reranker", "Generator"}
    assert all(d.status == "HEALTHY" for d in status.deployments.values())


def test_health_reports_each_stage_and_the_index(demo_graph: str) -> None:
    body = requests.get(f"{demo_graph}/healthz", timeout=30).json()
    assert body["status"] == "ok"
    assert {name: s["status"] for name, s in body["stages"].items()} == {
        "embedder": "ok",
        "retriever": "ok",
        "reranker": "ok",
        "generator": "ok",
    }
    assert body["index"]["passages"] == 188 and body["index"]["faiss_factory"] == "Flat"


def test_chat_answers_and_cites_the_right_passage(demo_graph: str) -> None:
    response = requests.post(f"{demo_graph}/v1/chat/completions", json=ask(QUESTION), timeout=30)
    assert response.status_code == 200
    body = response.json()
    answer = body["choices"][0]["message"]["content"]
    assert "高松市" in answer
    cited = [s for s in body["sources"] if s["cited"]]
    assert cited[0]["passage_id"] == "kagawa-overview"
    assert cited[0]["url"] == "https://ja.wikipedia.org/wiki/香川県"
    assert f"[{cited[0]['index']}]" in answer


def test_chat_streams_pieces_as_they_come(demo_graph: str) -> None:
    with requests.post(
        f"{demo_graph}/v1/chat/completions",
        json=ask(QUESTION, stream=True),
        stream=True,
        timeout=30,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(part.decode() for part in response.iter_content(chunk_size=None))
    events = parse_sse(body)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert "高松市" in text
    assert any(s["passage_id"] == "kagawa-overview" for s in events[-2]["sources"])


def test_demo_questions_find_their_passage(demo_graph: str) -> None:
    questions = demo_questions()[::6]
    hits = 0
    for q in questions:
        body = requests.post(
            f"{demo_graph}/v1/chat/completions", json=ask(q["question"]), timeout=30
        ).json()
        cited = {s["doc_id"] for s in body["sources"] if s["cited"]}
        hits += q["doc_id"] in cited and q["answer"] in body["choices"][0]["message"]["content"]
    assert hits / len(questions) >= 0.8, f"{hits}/{len(questions)} answered from the right passage"


def test_openai_client_chat_stream_and_sources(demo_graph: str) -> None:
    client = openai.OpenAI(base_url=f"{demo_graph}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model="ja-rag", messages=[{"role": "user", "content": QUESTION}]
    )
    assert "高松市" in (completion.choices[0].message.content or "")
    sources = (completion.model_extra or {})["sources"]
    assert any(s["passage_id"] == "kagawa-overview" for s in sources)

    stream = client.chat.completions.create(
        model="ja-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "高松市" in text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (chunks[-1].model_extra or {})["sources"]


def test_openai_client_embeddings_models_and_errors(demo_graph: str) -> None:
    client = openai.OpenAI(base_url=f"{demo_graph}/v1", api_key="unused", max_retries=0)
    models = {m.id: (m.model_extra or {})["kind"] for m in client.models.list()}
    assert models["ja-rag"] == "rag"
    embedding_model = next(name for name, kind in models.items() if kind == "embedding")
    result = client.embeddings.create(model=embedding_model, input=["札幌市", "那覇市"])
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (2, HashingEmbedderConfig().dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ja-rag", messages=[{"role": "user", "content": " "}])


def test_rerank_endpoint(demo_graph: str) -> None:
    documents = ["沖縄県の県庁所在地は那覇市である。", "香川県の県庁所在地は高松市である。"]
    body = requests.post(
        f"{demo_graph}/v1/rerank", json={"query": QUESTION, "documents": documents}, timeout=30
    ).json()
    assert [r["index"] for r in body["results"]] == [1, 0]


def test_server_keeps_serving_after_bad_requests(demo_graph: str) -> None:
    url = f"{demo_graph}/v1/chat/completions"
    bad = [b"{", json.dumps({"messages": "x"}).encode(), b"\xff\xfe", json.dumps(ask("")).encode()]
    for payload in bad:
        response = requests.post(
            url, data=payload, headers={"content-type": "application/json"}, timeout=30
        )
        assert response.status_code == 400, payload
        assert "error" in response.json()
    assert requests.post(url, json=ask(QUESTION), timeout=30).status_code == 200


def test_chat_page_is_served_under_the_route_prefix(demo_graph: str) -> None:
    page = requests.get(f"{demo_graph}/", timeout=30)
    assert page.status_code == 200 and page.url == f"{demo_graph}/ui/"
    assert "<title>ja-rag-serve</title>" in page.text
    script = requests.get(f"{demo_graph}/ui/chat.js", timeout=30)
    assert script.headers["content-type"].startswith("text/javascript")
