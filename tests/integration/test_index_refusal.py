"""A graph whose embedder differs from the index's fails at deploy time, clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray import serve

from deployments.embedder.config import HashingEmbedderConfig
from serve.app import build_app
from tests.integration.conftest import ServeCluster

pytestmark = pytest.mark.integration


def test_mismatched_embedder_fails_the_deploy_with_the_reason(
    serve_cluster: ServeCluster, demo_index: Path
) -> None:
    app = build_app({"index": {"path": str(demo_index)}, "embedder": {"dimension": 2048}})
    try:
        with pytest.raises(RuntimeError, match="Embedder"):
            serve.run(app, name="mismatch", route_prefix="/mismatch")
        status = serve.status().applications["mismatch"]
        assert status.status == "DEPLOY_FAILED"
        message = status.deployments["Embedder"].message
        expected = f"dimension: {HashingEmbedderConfig().dimension} != 2048"
        assert "different embedder" in message and expected in message
    finally:
        serve.delete("mismatch")
