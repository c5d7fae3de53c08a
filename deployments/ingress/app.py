"""The FastAPI application: routers attached, shared state on ``app.state``."""

from __future__ import annotations

from fastapi import FastAPI

from deployments.ingress import health, models, ui
from deployments.ingress.chat import router as chat
from deployments.ingress.chat.serving import ChatService
from deployments.ingress.config import IngressConfig
from deployments.ingress.embeddings import router as embeddings
from deployments.ingress.errors import install_error_handlers
from deployments.ingress.models import ModelCatalog
from deployments.ingress.rerank import router as rerank
from deployments.ingress.stages import StageClient

API_DESCRIPTION = (
    "Japanese retrieval-augmented chat (OpenAI-compatible, with sources) and the embedding, "
    "rerank and chat models behind it as self-hosted providers."
)


def create_app(stages: StageClient, config: IngressConfig) -> FastAPI:
    app = FastAPI(title="ja-rag-serve", description=API_DESCRIPTION, version="0.1.0")
    catalog = ModelCatalog(stages, config)
    app.state.config = config
    app.state.stages = stages
    app.state.catalog = catalog
    app.state.chat = ChatService(stages, config, catalog)
    for module in (chat, embeddings, rerank, models, health, ui):
        app.include_router(module.router)
    install_error_handlers(app)
    return app
