"""HTTP binding of the chat API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from deployments.ingress.auth import request_grant
from deployments.ingress.chat.protocol import ChatCompletionRequest
from deployments.ingress.chat.serving import ChatService
from deployments.ingress.deadline import Deadline, request_deadline
from deployments.ingress.errors import APIError

router = APIRouter()

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DEGRADED_HEADER = "X-RAG-Degraded"
"""Names the stages left out of an answer (also in the body's ``degraded``)."""


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    deadline: Annotated[Deadline, Depends(request_deadline)],
) -> Response:
    service: ChatService = request.app.state.chat
    await _check_knowledge_base(body, request, service)
    prepared = await service.prepare(body, deadline)
    if body.stream:
        # The generator is started before the response, so that a full or hung
        # generator still gets a proper status (503, 504) rather than a broken stream.
        answer = await service.start(prepared, deadline)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        degraded = service.degraded(prepared, answer)
        headers = {**_STREAM_HEADERS, **({DEGRADED_HEADER: ",".join(degraded)} if degraded else {})}
        return StreamingResponse(
            service.stream(prepared, answer, include_usage, deadline),
            media_type="text/event-stream",
            headers=headers,
        )
    completion = await service.complete(prepared, deadline)
    marked = {DEGRADED_HEADER: ",".join(completion.degraded)} if completion.degraded else None
    # Pydantic writes the JSON itself: the same bytes as FastAPI's generic encoder
    # (which a route without one response model gets), about 15x faster.
    return Response(completion.model_dump_json(), media_type="application/json", headers=marked)


async def _check_knowledge_base(
    body: ChatCompletionRequest, request: Request, service: ChatService
) -> None:
    """403 when the request's key may not use the knowledge base the request answers
    from (the default one when it names none)."""
    grant = request_grant(request.scope)
    rag_model = service.config.model_name
    if grant.knowledge_bases is None or not body.asks_retrieval(rag_model):
        return
    try:
        name = body.knowledge_base(rag_model)
    except ValueError:
        return  # prepare() answers 400
    if name is None:
        name = str((await service.stages.knowledge_bases())[0]["name"])
    if not grant.allows_knowledge_base(name):
        raise APIError(
            403,
            f"this API key may not use the knowledge base {name!r}",
            "permission_denied",
            "model",
        )
