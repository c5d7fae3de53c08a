"""HTTP binding of the chat API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from deployments.ingress.chat.protocol import ChatCompletion, ChatCompletionRequest
from deployments.ingress.chat.serving import ChatService

router = APIRouter()

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> ChatCompletion | StreamingResponse:
    service: ChatService = request.app.state.chat
    prepared = await service.prepare(body)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            service.stream(prepared, include_usage),
            media_type="text/event-stream",
            headers=_STREAM_HEADERS,
        )
    return await service.complete(prepared)
