"""HTTP binding of the rerank API (also at /rerank, where Dify posts)."""

from __future__ import annotations

import uuid
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Request

from deployments.ingress.config import IngressConfig
from deployments.ingress.deadline import Deadline, request_deadline
from deployments.ingress.models import ModelCatalog
from deployments.ingress.rerank.protocol import (
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
    TextDocument,
)
from deployments.ingress.stages import StageClient
from deployments.ingress.validation import check_text, check_texts

router = APIRouter()


@router.post("/v1/rerank", response_model=RerankResponse)
@router.post("/rerank", response_model=RerankResponse, include_in_schema=False)
async def rerank(
    body: RerankRequest,
    request: Request,
    deadline: Annotated[Deadline, Depends(request_deadline)],
) -> RerankResponse:
    catalog: ModelCatalog = request.app.state.catalog
    config: IngressConfig = request.app.state.config
    stages: StageClient = request.app.state.stages
    model = await catalog.check("reranker", body.model)
    check_text(body.query, config, "query")
    texts = body.texts
    check_texts(texts, config, "documents")
    scores = await deadline.within(stages.score(body.query, texts), "reranker")
    order = np.argsort(-scores.raw, kind="stable")[: body.top_n]
    results = [
        RerankResult(
            index=int(i),
            relevance_score=float(scores.relevance[i]),
            raw_score=float(scores.raw[i]),
            document=TextDocument(text=texts[i]) if body.return_documents else None,
        )
        for i in order
    ]
    chars = len(body.query) * len(texts) + sum(len(t) for t in texts)
    return RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}",
        model=model,
        results=results,
        usage=RerankUsage(total_tokens=chars),
    )
