"""HTTP binding of the TEI face. Register ``<server>/tei/embedder`` as a TEI embedding
server and ``<server>/tei/reranker`` as a TEI rerank server.

``/tokenize`` counts one token per character: the stages expose no tokenizer, and for
Japanese text a character count is an upper bound of any subword tokenizer's."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response

from deployments.ingress.config import IngressConfig
from deployments.ingress.deadline import Deadline, request_deadline
from deployments.ingress.models import ModelCatalog
from deployments.ingress.stages import StageClient, TextKind
from deployments.ingress.tei.protocol import (
    TEI_EMBEDDER,
    TEI_RERANKER,
    EmbedRequest,
    Info,
    Rank,
    RerankRequest,
    Token,
    TokenizeRequest,
)
from deployments.ingress.validation import check_text, check_texts

router = APIRouter(tags=["tei"])
VERSION = "ja-rag-serve 0.1.0"


def _info(config: IngressConfig, model: str, model_type: dict[str, dict[str, Any]]) -> Info:
    return Info(
        model_id=model,
        model_type=model_type,
        max_concurrent_requests=512,
        max_input_length=config.max_input_chars,
        max_batch_tokens=config.max_input_chars * config.max_batch_inputs,
        max_client_batch_size=config.max_batch_inputs,
        version=VERSION,
    )


@router.get(f"{TEI_EMBEDDER}/info", response_model=Info)
async def embedder_info(request: Request) -> Info:
    catalog: ModelCatalog = request.app.state.catalog
    model = await catalog.check("embedder", None)
    return _info(request.app.state.config, model, {"embedding": {"pooling": "mean"}})


@router.get(f"{TEI_RERANKER}/info", response_model=Info)
async def reranker_info(request: Request) -> Info:
    catalog: ModelCatalog = request.app.state.catalog
    model = await catalog.check("reranker", None)
    labels = {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    return _info(request.app.state.config, model, {"reranker": labels})


@router.get(f"{TEI_EMBEDDER}/health")
@router.get(f"{TEI_RERANKER}/health")
async def health() -> Response:
    """TEI's liveness check (the stages' own health is at /healthz)."""
    return Response(status_code=200)


@router.post(f"{TEI_EMBEDDER}/embed", response_model=list[list[float]])
async def embed(
    body: EmbedRequest,
    request: Request,
    deadline: Annotated[Deadline, Depends(request_deadline)],
) -> Response:
    """One unit-length vector per input, as a bare list."""
    config: IngressConfig = request.app.state.config
    stages: StageClient = request.app.state.stages
    texts = _fitted(body.texts, config, body.truncate, body.truncation_direction, "inputs")
    kind: TextKind = "query" if body.prompt_name == "query" else "passage"
    vectors = await deadline.within(stages.embed(texts, kind), "embedder")
    rows = np.asarray(vectors, dtype=np.float32)
    return Response(_json_rows(rows), media_type="application/json")


@router.post(f"{TEI_RERANKER}/rerank", response_model=list[Rank])
async def rerank(
    body: RerankRequest,
    request: Request,
    deadline: Annotated[Deadline, Depends(request_deadline)],
) -> list[Rank]:
    """Every text's score for the query, best first: the 0..1 relevance, or the model's
    raw score with ``raw_scores``."""
    config: IngressConfig = request.app.state.config
    stages: StageClient = request.app.state.stages
    check_text(body.query, config, "query")
    texts = _fitted(body.texts, config, body.truncate, body.truncation_direction, "texts")
    scores = await deadline.within(stages.score(body.query, texts), "reranker")
    values = scores.raw if body.raw_scores else scores.relevance
    order = np.argsort(-values, kind="stable")
    return [
        Rank(
            index=int(i),
            score=float(values[i]),
            text=body.texts[i] if body.return_text else None,
        )
        for i in order
    ]


@router.post(f"{TEI_EMBEDDER}/tokenize", response_model=list[list[Token]])
@router.post(f"{TEI_RERANKER}/tokenize", response_model=list[list[Token]])
async def tokenize(body: TokenizeRequest, request: Request) -> list[list[Token]]:
    """One token per character (id: its code point; start/stop: character offsets)."""
    config: IngressConfig = request.app.state.config
    check_texts(body.texts, config, "inputs")
    return [
        [Token(id=ord(c), text=c, start=i, stop=i + 1) for i, c in enumerate(text)]
        for text in body.texts
    ]


def _fitted(
    texts: list[str], config: IngressConfig, truncate: bool, direction: str, param: str
) -> list[str]:
    """The texts checked against the limits; cut to the longest allowed with
    ``truncate`` (from the end, or the start with ``truncation_direction`` Left)."""
    limit = config.max_input_chars
    if truncate:
        keep_end = direction.lower() == "left"
        texts = [(t[-limit:] if keep_end else t[:limit]) if len(t) > limit else t for t in texts]
    check_texts(texts, config, param)
    return texts


def _json_rows(rows: np.ndarray) -> str:
    """A JSON array of arrays of floats, written in one pass."""
    return "[" + ",".join("[" + ",".join(repr(float(x)) for x in row) + "]" for row in rows) + "]"
