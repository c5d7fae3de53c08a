"""API keys, CORS, body size and what is (not) logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from deployments.ingress.app import create_app
from deployments.ingress.config import AuthConfig, CorsConfig, IngressConfig
from tests.support import RETRIEVAL, local_stages

SECRET = "sk-test-9f8e7d6c5b4a"
OTHER = "sk-other-0123456789"
CHAT = {"messages": [{"role": "user", "content": "香川県の県庁所在地は？"}]}


@pytest.fixture(scope="module")
def stages(demo_index: Path) -> Any:
    return local_stages(demo_index)


def make_client(stages: Any, **config: Any) -> TestClient:
    return TestClient(create_app(stages, IngressConfig(**config), RETRIEVAL))


@pytest.fixture
def keyed(stages: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("JARAG_TEST_KEY", SECRET)
    auth = AuthConfig(api_key_env=("JARAG_TEST_KEY",), api_keys=(OTHER,))
    with make_client(stages, auth=auth) as client:
        yield client


def test_without_keys_configured_the_api_is_open(stages: Any) -> None:
    with make_client(stages) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {SECRET[:-1]}"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": SECRET},
        {"X-API-Key": SECRET},
    ],
)
def test_requests_without_a_valid_key_get_401_json(
    keyed: TestClient, headers: dict[str, str]
) -> None:
    for method, path in [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/rerank"),
        ("GET", "/v1/models"),
        ("GET", "/docs"),
        ("GET", "/nowhere"),
    ]:
        response = keyed.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (path, headers)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
        assert SECRET not in response.text


@pytest.mark.parametrize("key", [SECRET, OTHER])
def test_each_configured_key_is_accepted(keyed: TestClient, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    assert keyed.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
    assert keyed.get("/v1/models", headers={"Authorization": f"bearer {key}"}).status_code == 200


def test_health_is_exempt_by_default_and_exemptions_are_configurable(stages: Any) -> None:
    auth = AuthConfig(api_keys=(SECRET,), exempt_paths=("/healthz", "/openapi.json"))
    with make_client(stages, auth=auth) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_a_missing_key_variable_stops_the_ingress_from_starting(
    stages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JARAG_ABSENT_KEY", raising=False)
    with pytest.raises(ValueError, match=r"JARAG_ABSENT_KEY.*unset or empty"):
        create_app(
            stages,
            IngressConfig(auth=AuthConfig(api_key_env=("JARAG_ABSENT_KEY",))),
            RETRIEVAL,
        )


def test_keys_never_appear_in_the_config_repr_dump_or_logs(
    keyed: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    config = IngressConfig(auth=AuthConfig(api_keys=(SECRET,)))
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump())
    assert SECRET not in config.model_dump_json()
    with caplog.at_level(logging.DEBUG):
        keyed.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {SECRET}"})
        keyed.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer no"})
    assert SECRET not in caplog.text


def test_cors_is_off_by_default(stages: Any) -> None:
    with make_client(stages) as client:
        response = client.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options(
            "/v1/chat/completions",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_only_the_configured_origins(stages: Any) -> None:
    cors = CorsConfig(allow_origins=("https://chat.example",))
    auth = AuthConfig(api_keys=(SECRET,))
    with make_client(stages, cors=cors, auth=auth) as client:
        preflight = client.options(
            "/v1/chat/completions",
            headers={
                "Origin": "https://chat.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://chat.example"
        denied = client.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in denied.headers
        # A 401 still carries CORS headers, so that the page can read the error.
        unauthorized = client.get("/v1/models", headers={"Origin": "https://chat.example"})
        assert unauthorized.status_code == 401
        assert unauthorized.headers["access-control-allow-origin"] == "https://chat.example"


def test_cors_wildcard_with_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="allow_credentials"):
        CorsConfig(allow_origins=("*",), allow_credentials=True)


def test_bodies_over_the_limit_get_413_whether_announced_or_chunked(stages: Any) -> None:
    with make_client(stages, max_request_bytes=4096) as client:
        big = b'{"input": "' + b"a" * 5000 + b'"}'
        response = client.post(
            "/v1/embeddings", content=big, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"

        def chunks() -> Iterator[bytes]:
            yield b'{"input": "'
            for _ in range(10):
                yield b"a" * 1000
            yield b'"}'

        response = client.post(
            "/v1/embeddings", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert client.post("/v1/embeddings", json={"input": "札幌"}).status_code == 200
