"""A small OpenAI-protocol chat server for tests of the ``openai`` generator backend.

Run with ``uvicorn tests.openai_upstream:app``. Every request is appended as a JSON
line to the file named by ``UPSTREAM_RECORD``; a streamed answer cut short by the
client is recorded as ``{"event": "disconnected"}``. Model ``slow`` streams 200
pieces 50 ms apart; any other model answers ``REPLY`` in four pieces.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

REPLY = ["高松市", "です", "[1]", "。"]
PROMPT_TOKENS = 123
COMPLETION_TOKENS = 7

app = FastAPI()


def record(entry: dict[str, Any]) -> None:
    with open(os.environ["UPSTREAM_RECORD"], "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")


@app.get("/v1/models")
async def models() -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "echo", "object": "model"}]})


@app.post("/v1/chat/completions", response_model=None)
async def chat(request: Request) -> StreamingResponse | JSONResponse:
    body = await request.json()
    record({"authorization": request.headers.get("authorization"), "body": body})
    if not body.get("stream"):
        return JSONResponse({"error": {"message": "only streaming here"}}, status_code=400)
    pieces = [f"{i}," for i in range(200)] if body["model"] == "slow" else REPLY
    delay = 0.05 if body["model"] == "slow" else 0.0
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    events = _events(body["model"], pieces, delay, usage)
    return StreamingResponse(events, media_type="text/event-stream")


async def _events(model: str, pieces: list[str], delay: float, usage: bool) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        for piece in pieces:
            await asyncio.sleep(delay)
            yield chunk({"content": piece})
        yield chunk({}, "stop")
        if usage:
            totals = {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            }
            payload = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0}
            payload.update(model=model, choices=[], usage=totals)
            yield f"data: {json.dumps(payload)}\n\n"
        yield "data: [DONE]\n\n"
    except asyncio.CancelledError:
        record({"event": "disconnected"})
        raise
