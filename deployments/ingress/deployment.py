"""The Ingress deployment: holds the other stages' handles and serves the HTTP API."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve

from deployments.ingress.app import create_app
from deployments.ingress.config import IngressConfig
from deployments.ingress.stages import GraphStages


@serve.ingress()
class Ingress:
    """Holds no model: each request is chained through the stage deployments."""

    def __init__(
        self, config: IngressConfig, embedder: Any, retriever: Any, reranker: Any, generator: Any
    ) -> None:
        self.config = config
        self.stages = GraphStages(
            embedder, retriever, reranker, generator, retries=config.stage_retries
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.stages, self.config)
