"""HTTP binding of the embeddings API."""

from __future__ import annotations

import base64
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Request

from deployments.ingress.config import IngressConfig
from deployments.ingress.deadline import Deadline, request_deadline
from deployments.ingress.embeddings.protocol import (
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)
from deployments.ingress.errors import APIError
from deployments.ingress.models import ModelCatalog
from deployments.ingress.stages import StageClient
from deployments.ingress.validation import check_texts

router = APIRouter()


@router.post("/v1/embeddings", response_model=EmbeddingResponse)
@router.post("/tei/embedder/v1/embeddings", response_model=EmbeddingResponse, tags=["tei"])
async def create_embeddings(
    body: EmbeddingRequest,
    request: Request,
    deadline: Annotated[Deadline, Depends(request_deadline)],
) -> EmbeddingResponse:
    catalog: ModelCatalog = request.app.state.catalog
    config: IngressConfig = request.app.state.config
    stages: StageClient = request.app.state.stages
    model = await catalog.check("embedder", body.model)
    texts = body.texts
    check_texts(texts, config, "input")
    vectors = await deadline.within(stages.embed(texts, body.input_type), "embedder")
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise APIError(
            400,
            f"dimensions must be {vectors.shape[1]} (the model's size) or left out",
            param="dimensions",
        )
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    data = [
        EmbeddingData(
            index=i,
            embedding=base64.b64encode(row.tobytes()).decode("ascii")
            if body.encoding_format == "base64"
            else row.tolist(),
        )
        for i, row in enumerate(vectors)
    ]
    chars = sum(len(t) for t in texts)
    return EmbeddingResponse(
        data=data, model=model, usage=EmbeddingUsage(prompt_tokens=chars, total_tokens=chars)
    )
