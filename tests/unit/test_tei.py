"""The TEI face: the bodies TEI clients (Dify's Text Embedding Inference provider among
them) send to /tei/embedder and /tei/reranker, answered as text-embeddings-inference
answers them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from deployments.ingress.app import create_app
from deployments.ingress.config import AuthConfig, IngressConfig, ScopedKey
from tests.support import RETRIEVAL, local_stages

QUERY = "香川県の県庁所在地はどこですか？"
TEXTS = [
    "京都府の府庁所在地は京都市である。",
    "香川県の県庁所在地は高松市である。",
    "富士山は日本一高い山である。",
]
KEY = "tei-full-key-0123456789"
TEI_ONLY = "tei-only-key-0123456789"


@pytest.fixture(scope="module")
def client(demo_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    key_file = tmp_path_factory.mktemp("tei") / "tei.key"
    key_file.write_text(TEI_ONLY + "\n", encoding="utf-8")
    auth = AuthConfig(
        api_keys=(SecretStr(KEY),),
        keys=(ScopedKey(name="tei", file=str(key_file), endpoints=("tei",)),),
    )
    config = IngressConfig(max_input_chars=100, max_batch_inputs=8, auth=auth)
    app = create_app(local_stages(demo_index), config, RETRIEVAL)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as test_client:
        yield test_client


def test_info_says_the_model_type_as_tei_does(client: TestClient) -> None:
    served = {m["kind"]: m["id"] for m in client.get("/v1/models").json()["data"]}
    embedder = client.get("/tei/embedder/info").json()
    assert list(embedder["model_type"]) == ["embedding"]
    assert embedder["model_id"] == served["embedding"]
    assert embedder["max_input_length"] == 100 and embedder["max_client_batch_size"] == 8
    reranker = client.get("/tei/reranker/info").json()
    assert list(reranker["model_type"]) == ["reranker"]
    assert reranker["model_id"] == served["rerank"]


def test_embed_answers_a_bare_list_of_unit_vectors(client: TestClient) -> None:
    one = client.post("/tei/embedder/embed", json={"inputs": TEXTS[0]})
    assert one.status_code == 200
    vectors = np.asarray(one.json(), dtype=np.float32)
    assert vectors.shape[0] == 1
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    many = client.post(
        "/tei/embedder/embed", json={"inputs": TEXTS, "normalize": True, "truncate": False}
    ).json()
    openai = client.post("/v1/embeddings", json={"input": TEXTS}).json()
    expected = np.asarray([d["embedding"] for d in openai["data"]])
    assert np.allclose(np.asarray(many), expected, atol=1e-6), "passages, as /v1/embeddings"
    query = client.post("/tei/embedder/embed", json={"inputs": [QUERY], "prompt_name": "query"})
    as_query = client.post("/v1/embeddings", json={"input": [QUERY], "input_type": "query"})
    assert np.allclose(query.json()[0], as_query.json()["data"][0]["embedding"], atol=1e-6)


def test_embed_truncates_only_when_asked(client: TestClient) -> None:
    long = "長" * 150
    refused = client.post("/tei/embedder/embed", json={"inputs": [long]})
    assert refused.status_code == 400
    cut = client.post("/tei/embedder/embed", json={"inputs": [long], "truncate": True})
    assert cut.status_code == 200
    same = client.post("/tei/embedder/embed", json={"inputs": ["長" * 100]}).json()
    assert np.allclose(cut.json(), same)


def test_rerank_answers_every_text_best_first(client: TestClient) -> None:
    body = {"query": QUERY, "texts": TEXTS, "raw_scores": False, "return_text": True}
    ranks = client.post("/tei/reranker/rerank", json=body).json()
    assert ranks[0]["index"] == 1
    assert sorted(r["index"] for r in ranks) == [0, 1, 2]
    scores = [r["score"] for r in ranks]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert ranks[0]["text"] == TEXTS[1]
    cohere = client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS}).json()
    by_index = {r["index"]: r for r in cohere["results"]}
    assert all(r["score"] == pytest.approx(by_index[r["index"]]["relevance_score"]) for r in ranks)
    raw = client.post("/tei/reranker/rerank", json={**body, "raw_scores": True}).json()
    assert all(r["score"] == pytest.approx(by_index[r["index"]]["raw_score"]) for r in raw)
    bare = client.post("/tei/reranker/rerank", json={"query": QUERY, "texts": TEXTS}).json()
    assert "text" not in bare[0] or bare[0]["text"] is None


def test_root_rerank_keeps_the_cohere_shape(client: TestClient) -> None:
    body = client.post("/rerank", json={"query": QUERY, "documents": TEXTS, "top_n": 2}).json()
    assert body["object"] == "rerank" and len(body["results"]) == 2
    assert body["results"][0]["index"] == 1


def test_difys_tei_provider_calls(client: TestClient) -> None:
    """Dify's provider: GET /info (the model type), POST /tokenize (to count tokens),
    then POST /v1/embeddings under the same base URL; POST /rerank for the reranker."""
    info = client.get("/tei/embedder/info").json()
    assert next(iter(info["model_type"])) == "embedding"
    tokens = client.post("/tei/embedder/tokenize", json={"inputs": ["高松市", "京都"]}).json()
    assert [len(t) for t in tokens] == [3, 2]
    assert tokens[0][0] == {"id": ord("高"), "text": "高", "special": False, "start": 0, "stop": 1}
    embeddings = client.post("/tei/embedder/v1/embeddings", json={"input": ["ping"]}).json()
    assert embeddings["object"] == "list" and len(embeddings["data"]) == 1
    ranks = client.post(
        "/tei/reranker/rerank", json={"query": QUERY, "texts": TEXTS, "return_text": True}
    ).json()
    assert {"index", "text", "score"} <= set(ranks[0])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tei/embedder/embed", {"inputs": []}),
        ("/tei/embedder/embed", {"inputs": ["x"] * 9}),
        ("/tei/reranker/rerank", {"query": "", "texts": ["x"]}),
        ("/tei/reranker/rerank", {"query": "x", "texts": []}),
        ("/tei/embedder/embed", {"text": "x"}),
    ],
)
def test_bad_tei_requests_are_400(client: TestClient, path: str, body: dict[str, object]) -> None:
    assert client.post(path, json=body).status_code == 400


def test_a_key_limited_to_the_tei_face(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {TEI_ONLY}"}
    assert client.get("/tei/embedder/info", headers=headers).status_code == 200
    embed = client.post("/tei/embedder/embed", json={"inputs": "京都"}, headers=headers)
    assert embed.status_code == 200
    refused = client.post("/v1/embeddings", json={"input": "京都"}, headers=headers)
    assert refused.status_code == 403
    wrong = client.get("/tei/embedder/info", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
