"""The Ingress deployment: holds the other stages' handles and serves the HTTP API."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve

from deployments.ingress.app import create_app
from deployments.ingress.config import IngressConfig, RetrievalDefaults
from deployments.ingress.stages import ServeHandle, Stages


@serve.ingress()
class Ingress:
    """Holds no model: each request is chained through the stage deployments, whose
    DeploymentHandles the builder passes in."""

    def __init__(
        self,
        config: IngressConfig,
        defaults: RetrievalDefaults,
        embedder: Any,
        retriever: Any,
        reranker: Any,
        generator: Any,
    ) -> None:
        self.config = config
        self.stages = Stages(
            ServeHandle(embedder),
            ServeHandle(retriever),
            ServeHandle(reranker),
            ServeHandle(generator),
            retries=config.stage_retries,
        )
        self.defaults = defaults

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.stages, self.config, self.defaults)
