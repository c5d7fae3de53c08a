"""HTTP binding of Dify's External Knowledge API: POST /retrieval.

Registered in Dify as an "External Knowledge API" with this server's base URL (Dify
appends /retrieval); each knowledge base's name is the "External Knowledge ID"."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response

from deployments.ingress.auth import dify_error, request_grant
from deployments.ingress.config import IngressConfig, RetrievalDefaults
from deployments.ingress.deadline import Deadline, DeadlineExceeded, request_deadline
from deployments.ingress.errors import APIError
from deployments.ingress.retrieval.protocol import (
    Record,
    RetrievalRequest,
    RetrievalResponse,
)
from deployments.ingress.stages import (
    KnowledgeBaseNotFound,
    StageClient,
    StageError,
    StageOverloaded,
)
from deployments.ingress.validation import check_text
from deployments.retriever.filters import InvalidFilter

logger = logging.getLogger(__name__)
router = APIRouter()

EMPTY_BODY_MESSAGE = (
    "the body must be a JSON retrieval request: {knowledge_id, query, retrieval_setting: "
    "{top_k, score_threshold}, metadata_condition?}; the API key is valid"
)


@router.post(
    "/retrieval",
    response_model=RetrievalResponse,
    responses={
        400: {"description": "Malformed request (error_code 400)."},
        403: {"description": "1001: malformed Authorization header; 1002: wrong key."},
        404: {"description": "2001: the knowledge base does not exist."},
    },
)
async def retrieval(
    request: Request,
    deadline: Annotated[Deadline, Depends(request_deadline)],
    body: Annotated[RetrievalRequest | None, Body()] = None,
) -> Response:
    """The records of one knowledge base that answer ``query``, best first, reranked:
    at most ``top_k``, each with a relevance of at least ``score_threshold``; searched
    with the setting's ``nprobe`` / ``ef_search`` where it gives them."""
    if body is None:
        # Dify checks an endpoint when it is registered by POSTing here with the key
        # and no body; it refuses the endpoint on 403, 404 or 502.
        return dify_error(400, 400, EMPTY_BODY_MESSAGE)
    grant = request_grant(request.scope)
    if not grant.allows_knowledge_base(body.knowledge_id):
        return dify_error(
            403, 1002, "authorization failed: this API key may not use that knowledge base"
        )
    config: IngressConfig = request.app.state.config
    defaults: RetrievalDefaults = request.app.state.defaults
    stages: StageClient = request.app.state.stages
    try:
        check_text(body.query, config, "query")
        where = body.metadata_condition.to_filter() if body.metadata_condition else None
    except (APIError, InvalidFilter) as error:
        return dify_error(400, 400, str(error))
    setting = body.retrieval_setting
    options = defaults.resolve(max(defaults.top_k, setting.top_k), None, setting.search)
    try:
        candidates = await deadline.within(
            stages.retrieve(body.query, options.top_k, body.knowledge_id, where, options.search),
            "retriever",
        )
        hits = (
            await deadline.within(stages.rerank(body.query, candidates, setting.top_k), "reranker")
            if candidates
            else []
        )
    except KnowledgeBaseNotFound as error:
        return dify_error(404, 2001, f"the knowledge base does not exist: {error}")
    except StageOverloaded as error:
        response = dify_error(error.status, error.status, str(error))
        response.headers["Retry-After"] = str(config.retry_after_s)
        return response
    except StageError as error:
        logger.warning("retrieval: %s", error)
        return dify_error(503, 503, str(error))
    except DeadlineExceeded as error:
        return dify_error(504, 504, str(error))
    records = [
        Record.from_hit(hit, body.knowledge_id)
        for hit in hits
        if hit.relevance is not None and hit.relevance >= setting.score_threshold
    ]
    return Response(
        RetrievalResponse(records=records).model_dump_json(), media_type="application/json"
    )
