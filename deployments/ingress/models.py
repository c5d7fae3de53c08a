"""The model ids this server answers to, and GET /v1/models."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from deployments.ingress.auth import request_grant
from deployments.ingress.config import FULL_ACCESS, Grant, IngressConfig
from deployments.ingress.errors import APIError
from deployments.ingress.stages import StageClient, StageError

router = APIRouter()


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ja-rag-serve"
    kind: Literal["rag", "chat", "embedding", "rerank"]
    knowledge_base: str | None = None
    """For a 'rag' model: the knowledge base it answers from."""
    description: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ModelCatalog:
    """Model ids, asked of the stages once and remembered."""

    def __init__(self, stages: StageClient, config: IngressConfig) -> None:
        self.stages = stages
        self.config = config
        self._names: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._created = int(time.time())

    async def generator_model(self) -> str:
        return await self._name("generator")

    async def cards(self, grant: Grant = FULL_ACCESS) -> list[ModelCard]:
        """The RAG model (the default knowledge base), one per knowledge base the key
        may use (``<model_name>/<knowledge base>``, when there are several), then the
        stages' models."""
        kinds: list[tuple[str, Literal["chat", "embedding", "rerank"]]] = [
            ("generator", "chat"),
            ("embedder", "embedding"),
            ("reranker", "rerank"),
        ]
        bases = await self.stages.knowledge_bases()
        allowed = [b for b in bases if grant.allows_knowledge_base(str(b["name"]))]
        cards = []
        if allowed and allowed[0] is bases[0]:
            default = str(bases[0]["name"])
            cards.append(
                ModelCard(
                    id=self.config.model_name,
                    created=self._created,
                    kind="rag",
                    knowledge_base=default,
                    description=str(bases[0].get("description") or "") or None,
                )
            )
        cards += [
            ModelCard(
                id=f"{self.config.model_name}/{b['name']}",
                created=self._created,
                kind="rag",
                knowledge_base=str(b["name"]),
                description=str(b.get("description") or "") or None,
            )
            for b in allowed
            if len(bases) > 1  # one base: 'ja-rag' alone answers from it
        ]
        for stage, kind in kinds:
            cards.append(ModelCard(id=await self._name(stage), created=self._created, kind=kind))
        return cards

    async def check(self, stage: str, requested: str | None) -> str:
        """The served model id; 404 when the client names another one."""
        served = await self._name(stage)
        if requested is not None and requested != served:
            raise APIError(
                404,
                f"model {requested!r} does not exist; this server's {stage} model is {served!r}",
                "model_not_found",
                "model",
            )
        return served

    async def _name(self, stage: str) -> str:
        if stage not in self._names:
            async with self._lock:
                if stage not in self._names:
                    try:
                        details: dict[str, Any] = await asyncio.wait_for(
                            self.stages.describe(stage), self.config.health_timeout_s
                        )
                    except StageError:
                        raise
                    except Exception as error:
                        raise APIError(
                            503,
                            f"the {stage} stage is unavailable: {type(error).__name__}",
                            "stage_unavailable",
                            headers={"Retry-After": str(self.config.retry_after_s)},
                        ) from error
                    self._names[stage] = str(details["model"])
        return self._names[stage]


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    catalog: ModelCatalog = request.app.state.catalog
    return ModelList(data=await catalog.cards(request_grant(request.scope)))
