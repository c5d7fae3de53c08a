"""The model ids this server answers to, and GET /v1/models."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from deployments.ingress.config import IngressConfig
from deployments.ingress.errors import APIError
from deployments.ingress.stages import StageClient, StageError

router = APIRouter()


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ja-rag-serve"
    kind: Literal["rag", "chat", "embedding", "rerank"]


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

    async def cards(self) -> list[ModelCard]:
        kinds: list[tuple[str, Literal["chat", "embedding", "rerank"]]] = [
            ("generator", "chat"),
            ("embedder", "embedding"),
            ("reranker", "rerank"),
        ]
        cards = [ModelCard(id=self.config.model_name, created=self._created, kind="rag")]
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
    return ModelList(data=await catalog.cards())
