"""Dify's External Knowledge API (POST /retrieval) over two knowledge bases, keys scoped
to knowledge bases and endpoints, and choosing a knowledge base on the chat endpoint.

Request bodies are written as Dify sends them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from deployments.embedder.config import HashingEmbedderConfig
from deployments.ingress.app import create_app
from deployments.ingress.config import AuthConfig, IngressConfig, ScopedKey
from deployments.retriever.search_parameters import SearchParameters
from serve.app import in_process_stages
from serve.config import AppConfig
from serve.indexing.build import BuildSettings, build_index
from tests.support import write_jsonl
from tests.unit.test_knowledge_bases import catalogue_records

FULL_KEY = "full-access-key-0123456789"
FILE_KEY = "key-from-a-file-9876543210"
RETRIEVAL_ONLY = "scoped-retrieval-catalogue-key"
CHAT_CATALOGUE = "scoped-chat-catalogue-key"
ENV = {"JARAG_TEST_RETRIEVAL_KEY": RETRIEVAL_ONLY, "JARAG_TEST_CHAT_KEY": CHAT_CATALOGUE}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


FULL = bearer(FULL_KEY)


@pytest.fixture(scope="module")
def client(demo_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("dify")
    corpus = write_jsonl(root / "catalogue.jsonl", catalogue_records())
    build_index(
        [corpus], root / "catalogue", HashingEmbedderConfig(), BuildSettings(progress=False)
    )
    key_file = root / "keys.txt"
    key_file.write_text(f"# operators\n\n{FILE_KEY}\n", encoding="utf-8")
    config = AppConfig.model_validate(
        {
            "knowledge_bases": [
                {"name": "prefectures", "path": str(demo_index), "description": "47都道府県"},
                {"name": "catalogue", "path": str(root / "catalogue"), "description": "資料"},
            ]
        }
    )
    auth = AuthConfig(
        api_keys=(SecretStr(FULL_KEY),),
        api_key_file=str(key_file),
        keys=(
            ScopedKey(
                name="dify-catalogue",
                env="JARAG_TEST_RETRIEVAL_KEY",
                knowledge_bases=("catalogue",),
                endpoints=("retrieval", "models"),
            ),
            ScopedKey(
                name="chat-catalogue",
                env="JARAG_TEST_CHAT_KEY",
                knowledge_bases=("catalogue",),
                endpoints=("chat",),
            ),
        ),
    )
    os.environ.update(ENV)
    try:
        app = create_app(
            in_process_stages(config),
            IngressConfig(auth=auth, max_input_chars=2000),
            config.retrieval_defaults(),
        )
    finally:
        for name in ENV:
            del os.environ[name]
    with TestClient(app) as test_client:
        yield test_client


def dify_body(knowledge_id: str, query: str, top_k: int = 3, **extra: Any) -> dict[str, Any]:
    """A body as Dify's ExternalDatasetService posts it; ``nprobe`` and ``ef_search``
    among ``extra`` go in its retrieval_setting (this server's own fields)."""
    setting = {"top_k": top_k, "score_threshold": 0.0}
    setting |= {k: extra.pop(k) for k in ("nprobe", "ef_search") if k in extra}
    return {"knowledge_id": knowledge_id, "query": query, "retrieval_setting": setting, **extra}


def retrieve(client: TestClient, body: dict[str, Any], key: str = FULL_KEY) -> Any:
    return client.post("/retrieval", json=body, headers=bearer(key))


def test_records_are_reranked_passages_with_metadata(client: TestClient) -> None:
    response = retrieve(client, dify_body("prefectures", "香川県の県庁所在地はどこですか？"))
    assert response.status_code == 200
    records = response.json()["records"]
    assert 1 <= len(records) <= 3
    assert set(records[0]) == {"content", "score", "title", "metadata"}
    assert records[0]["metadata"]["passage_id"] == "kagawa-overview"
    assert "高松市" in records[0]["content"]
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    for record in records:
        assert isinstance(record["metadata"], dict)
        assert record["metadata"]["knowledge_base"] == "prefectures"


def test_metadata_condition_absent_and_null_are_the_same(client: TestClient) -> None:
    absent = retrieve(client, dify_body("catalogue", "港町の資料", 5)).json()
    null = retrieve(client, dify_body("catalogue", "港町の資料", 5, metadata_condition=None)).json()
    assert absent == null
    assert len(absent["records"]) == 5


def test_metadata_condition_filters_in_the_search(client: TestClient) -> None:
    condition = {
        "logical_operator": "and",
        "conditions": [
            {"name": ["category"], "comparison_operator": "is", "value": "歴史"},
            {"name": ["year"], "comparison_operator": "≥", "value": "2010"},
        ],
    }
    body = dify_body("catalogue", "食についての資料", 4, metadata_condition=condition)
    records = retrieve(client, body).json()["records"]
    # 歴史 from 2010 on: 2010, 2013, ..., 2028 (seven), so four come back.
    assert len(records) == 4
    assert all(r["metadata"]["category"] == "歴史" for r in records)
    assert all(int(str(r["metadata"]["year"])) >= 2010 for r in records)
    either = dict(condition, logical_operator="or")
    body = dify_body("catalogue", "資料", 30, metadata_condition=either)
    assert len(retrieve(client, body).json()["records"]) == 10 + 20 - 7


def test_an_empty_condition_list_filters_nothing(client: TestClient) -> None:
    body = dify_body("catalogue", "港町", 5, metadata_condition={"conditions": []})
    assert len(retrieve(client, body).json()["records"]) == 5


def test_score_threshold_drops_less_relevant_records(client: TestClient) -> None:
    body = dify_body("prefectures", "香川県の県庁所在地はどこですか？", 10)
    everything = retrieve(client, body).json()["records"]
    threshold = (everything[0]["score"] + everything[-1]["score"]) / 2
    body["retrieval_setting"]["score_threshold"] = threshold
    kept = retrieve(client, body).json()["records"]
    assert 0 < len(kept) < len(everything)
    assert all(r["score"] >= threshold for r in kept)


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 403, 1001),
        ({"Authorization": "Bearer"}, 403, 1001),
        ({"Authorization": f"Basic {FULL_KEY}"}, 403, 1001),
        ({"Authorization": "Bearer not-a-key"}, 403, 1002),
    ],
)
def test_authorization_errors_have_dify_codes(
    client: TestClient, headers: dict[str, str], status: int, code: int
) -> None:
    response = client.post("/retrieval", json=dify_body("prefectures", "京都"), headers=headers)
    assert response.status_code == status
    body = response.json()
    assert body["error_code"] == code and body["error_msg"]
    assert FULL_KEY not in response.text


def test_unknown_knowledge_base_is_2001(client: TestClient) -> None:
    response = retrieve(client, dify_body("no-such-base", "京都"))
    assert response.status_code == 404
    assert response.json()["error_code"] == 2001


def test_dify_registration_probe_gets_400_with_a_valid_key(client: TestClient) -> None:
    """Dify POSTs to <endpoint>/retrieval with the key and no body when an endpoint is
    registered, and refuses it on 403, 404 or 502."""
    response = client.post("/retrieval", headers=FULL)
    assert response.status_code == 400
    assert "retrieval request" in response.json()["error_msg"]
    assert client.post("/retrieval", headers=bearer("wrong")).status_code == 403


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"knowledge_id": "prefectures", "query": "京都"}, "retrieval_setting"),
        (dify_body("prefectures", "京都", 0), "top_k"),
        (dify_body("prefectures", "京都", nprobe=0), "nprobe"),
        (dify_body("prefectures", "京都", ef_search=0), "ef_search"),
        (dify_body("prefectures", "   "), "query is empty"),
        (
            dify_body(
                "catalogue",
                "x",
                metadata_condition={
                    "conditions": [{"name": "year", "comparison_operator": "like", "value": "1"}]
                },
            ),
            "unknown comparison_operator",
        ),
        (
            dify_body(
                "catalogue",
                "x",
                metadata_condition={
                    "conditions": [{"name": "year", "comparison_operator": ">", "value": "many"}]
                },
            ),
            "needs a number",
        ),
    ],
)
def test_malformed_requests_are_400(
    client: TestClient, body: dict[str, Any], fragment: str
) -> None:
    response = retrieve(client, body)
    assert response.status_code == 400
    assert response.json()["error_code"] == 400
    assert fragment in response.json()["error_msg"]


def test_search_settings_in_retrieval_setting_reach_the_retriever(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nprobe / ef_search, which Dify never sends, become the search's parameters; a
    body without them searches with the index's own settings."""
    stages = client.app.state.stages  # type: ignore[attr-defined]
    asked: list[SearchParameters | None] = []
    retrieve_with = stages.retrieve

    async def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append(args[4] if len(args) > 4 else kwargs.get("params"))
        return await retrieve_with(*args, **kwargs)

    monkeypatch.setattr(stages, "retrieve", recording)
    question = "香川県の県庁所在地はどこですか？"
    plain = retrieve(client, dify_body("prefectures", question))
    tuned = retrieve(client, dify_body("prefectures", question, nprobe=8, ef_search=64))
    assert plain.status_code == tuned.status_code == 200
    assert asked == [None, SearchParameters(nprobe=8, ef_search=64)]
    # The demo index is exact (Flat): the settings change nothing there.
    assert tuned.json() == plain.json()


def test_a_key_from_the_key_file_is_accepted(client: TestClient) -> None:
    assert retrieve(client, dify_body("catalogue", "港町"), FILE_KEY).status_code == 200
    assert client.get("/v1/models", headers=bearer(FILE_KEY)).status_code == 200
    assert client.get("/v1/models", headers=bearer("nope")).status_code == 401


def test_a_key_scoped_to_one_knowledge_base(client: TestClient) -> None:
    assert retrieve(client, dify_body("catalogue", "港町"), RETRIEVAL_ONLY).status_code == 200
    refused = retrieve(client, dify_body("prefectures", "京都"), RETRIEVAL_ONLY)
    assert refused.status_code == 403 and refused.json()["error_code"] == 1002
    # Not revealed: a base that does not exist is refused the same way.
    hidden = retrieve(client, dify_body("no-such-base", "京都"), RETRIEVAL_ONLY)
    assert hidden.status_code == 403 and hidden.json()["error_code"] == 1002
    models = client.get("/v1/models", headers=bearer(RETRIEVAL_ONLY)).json()["data"]
    rag = [m["id"] for m in models if m["kind"] == "rag"]
    assert rag == ["ja-rag/catalogue"]


def test_a_key_scoped_to_endpoints(client: TestClient) -> None:
    chat = {"model": "ja-rag/catalogue", "messages": [{"role": "user", "content": "港町"}]}
    response = client.post("/v1/chat/completions", json=chat, headers=bearer(RETRIEVAL_ONLY))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    embeddings = client.post(
        "/v1/embeddings", json={"input": "京都"}, headers=bearer(CHAT_CATALOGUE)
    )
    assert embeddings.status_code == 403
    refused = retrieve(client, dify_body("catalogue", "港町"), CHAT_CATALOGUE)
    assert refused.status_code == 403 and refused.json()["error_code"] == 1002


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_chat_answers_from_the_knowledge_base_its_model_names(client: TestClient) -> None:
    question = "歴史についての資料はありますか？"
    by_model = client.post(
        "/v1/chat/completions", json=ask(question, model="ja-rag/catalogue"), headers=FULL
    ).json()
    assert by_model["model"] == "ja-rag/catalogue"
    assert by_model["sources"] and all(
        s["passage_id"].startswith("doc-") for s in by_model["sources"]
    )
    by_field = client.post(
        "/v1/chat/completions",
        json=ask(question, rag={"knowledge_base": "catalogue"}),
        headers=FULL,
    ).json()
    assert [s["passage_id"] for s in by_field["sources"]] == [
        s["passage_id"] for s in by_model["sources"]
    ]
    default = client.post("/v1/chat/completions", json=ask("香川県の県庁所在地は？"), headers=FULL)
    assert all(not s["passage_id"].startswith("doc-") for s in default.json()["sources"])


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (ask("港町", model="ja-rag/no-such-base"), 404),
        (ask("港町", rag={"knowledge_base": "no-such-base"}), 404),
        (ask("港町", model="ja-rag/catalogue", rag={"knowledge_base": "prefectures"}), 400),
    ],
)
def test_chat_knowledge_base_errors(
    client: TestClient, payload: dict[str, Any], status: int
) -> None:
    response = client.post("/v1/chat/completions", json=payload, headers=FULL)
    assert response.status_code == status, response.text


def test_a_chat_key_scoped_to_one_knowledge_base(client: TestClient) -> None:
    key = bearer(CHAT_CATALOGUE)
    allowed = client.post(
        "/v1/chat/completions", json=ask("港町", model="ja-rag/catalogue"), headers=key
    )
    assert allowed.status_code == 200
    default = client.post("/v1/chat/completions", json=ask("京都"), headers=key)
    assert default.status_code == 403, "the default base is prefectures"
    other = client.post(
        "/v1/chat/completions", json=ask("京都", rag={"knowledge_base": "prefectures"}), headers=key
    )
    assert other.status_code == 403


def test_models_list_every_knowledge_base(client: TestClient) -> None:
    models = client.get("/v1/models", headers=FULL).json()["data"]
    rag = {m["id"]: m for m in models if m["kind"] == "rag"}
    assert list(rag) == ["ja-rag", "ja-rag/prefectures", "ja-rag/catalogue"]
    assert rag["ja-rag"]["knowledge_base"] == "prefectures"
    assert rag["ja-rag/catalogue"]["description"] == "資料"


def test_a_body_that_is_not_json_is_400_in_difys_shape(client: TestClient) -> None:
    response = client.post(
        "/retrieval",
        content=b"{not json",
        headers={**FULL, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == 400
    assert "not valid JSON" in response.json()["error_msg"]


def test_the_api_description_documents_the_retrieval_body(client: TestClient) -> None:
    schema = client.get("/openapi.json", headers=FULL).json()
    operation = schema["paths"]["/retrieval"]["post"]
    assert "requestBody" in operation
    assert "RetrievalRequest" in str(operation["requestBody"])
