"""Schema-based fuzzing: requests generated from the OpenAPI description (valid and
invalid ones, by schemathesis and Hypothesis) never get a 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode

from deployments.ingress.app import create_app
from deployments.ingress.config import IngressConfig
from deployments.ingress.deadline import DEADLINE_HEADER
from tests.support import RETRIEVAL, local_stages

# Small limits keep each generated request cheap on the built-in engines.
CONFIG = IngressConfig(max_input_chars=2000, max_batch_inputs=32, max_messages=32)
EXAMPLES_PER_OPERATION = 50


@pytest.fixture(scope="module")
def api_schema(demo_index: Path) -> Any:
    app = create_app(local_stages(demo_index), CONFIG, RETRIEVAL)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def check(case: Case[Any]) -> None:
    response = case.call()
    asked_deadline = DEADLINE_HEADER.lower() in {k.lower() for k in (case.headers or {})}
    if response.status_code == 504 and asked_deadline:
        return  # the client asked for a deadline too short to answer in
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        # Dify's External Knowledge API has its own error shape.
        assert body["error_msg"] if "error_code" in body else body["error"]["message"]


def _has_inputs(operation: Any) -> bool:
    return any(len(part) for part in (operation.body, operation.headers, operation.query))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(api_schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/rerank",
        "/v1/models",
        "/healthz",
    }
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Case[Any]) -> None:
            check(case)

        fuzz()
