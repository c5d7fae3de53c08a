"""The FastAPI application: routers attached, shared state on ``app.state``."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from deployments.ingress import health, models, ui
from deployments.ingress.auth import APIKeyMiddleware
from deployments.ingress.body_limit import BodyLimitMiddleware
from deployments.ingress.chat import router as chat
from deployments.ingress.chat.router import DEGRADED_HEADER
from deployments.ingress.chat.serving import ChatService
from deployments.ingress.config import IngressConfig, RetrievalDefaults
from deployments.ingress.embeddings import router as embeddings
from deployments.ingress.errors import install_error_handlers
from deployments.ingress.models import ModelCatalog
from deployments.ingress.request_metrics import RequestMetricsMiddleware
from deployments.ingress.rerank import router as rerank
from deployments.ingress.retrieval import router as retrieval
from deployments.ingress.stages import StageClient
from deployments.ingress.tei import router as tei
from deployments.metrics import IngressMetrics

API_DESCRIPTION = (
    "Japanese retrieval-augmented chat (OpenAI-compatible, with sources) and the embedding, "
    "rerank and chat models behind it as self-hosted providers."
)


def create_app(
    stages: StageClient,
    config: IngressConfig,
    defaults: RetrievalDefaults,
    metrics: IngressMetrics | None = None,
) -> FastAPI:
    """``metrics`` receives what the app records (a test passes its own)."""
    app = FastAPI(title="ja-rag-serve", description=API_DESCRIPTION, version="0.1.0")
    catalog = ModelCatalog(stages, config)
    metrics = metrics or IngressMetrics()
    app.state.config = config
    app.state.stages = stages
    app.state.catalog = catalog
    app.state.defaults = defaults
    app.state.metrics = metrics
    app.state.chat = ChatService(stages, config, defaults, catalog, metrics)
    for module in (chat, embeddings, rerank, retrieval, tei, models, health, ui):
        app.include_router(module.router)
    install_error_handlers(app)
    # Outermost last: metrics (sees every response), CORS (answers preflights), then API
    # keys, then the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_request_bytes)
    if config.auth.enabled:
        grants = config.auth.resolve_grants()
        app.add_middleware(APIKeyMiddleware, grants=grants, exempt_paths=config.auth.exempt_paths)
    cors = config.cors
    if cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors.allow_origins),
            allow_methods=list(cors.allow_methods),
            allow_headers=list(cors.allow_headers),
            allow_credentials=cors.allow_credentials,
            expose_headers=["Retry-After", DEGRADED_HEADER],
            max_age=cors.max_age_s,
        )
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
