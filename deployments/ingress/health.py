"""GET /healthz: every stage asked to describe itself, and the index being served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deployments.ingress.config import IngressConfig
from deployments.ingress.stages import StageClient, check_stages

router = APIRouter()


@router.get("/healthz")
async def health(request: Request) -> JSONResponse:
    stages: StageClient = request.app.state.stages
    config: IngressConfig = request.app.state.config
    statuses = await check_stages(stages, config.health_timeout_s)
    healthy = all(s.healthy for s in statuses.values())
    body: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        "stages": {
            name: {
                "status": "ok" if s.healthy else "down",
                "latency_ms": round(s.latency_ms, 2),
                **s.details,
                **({"error": s.error} if s.error else {}),
            }
            for name, s in statuses.items()
        },
    }
    retriever = statuses["retriever"]
    if retriever.healthy:
        body["index"] = retriever.details
    return JSONResponse(body, status_code=200 if healthy else 503)
