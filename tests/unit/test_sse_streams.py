"""serve/bench/sse_streams.py against a real local HTTP server that streams chat chunks
as vLLM's OpenAI server does (a role chunk, text pieces, pieces without text, a usage
chunk, [DONE])."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from serve.bench.sse_streams import (
    ChatStreams,
    Level,
    Side,
    StreamResult,
    chat_body,
    measure_level,
    parse_event,
    percentile,
    summarize,
    table,
)
from serve.bench.vllm_streaming import server_flags

FIRST_TEXT_DELAY_S = 0.2
TOKENS = 7
PROMPT = 42


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _chunk(content: str | None, role: str | None = None) -> bytes:
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    return _event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]})


class SSEServer:
    """Streams one answer per POST: the role at once, after FIRST_TEXT_DELAY_S a piece
    without text (a partial character), then text, then the usage of TOKENS tokens.
    ``mode`` breaks it on purpose."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.mode = "ok"

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        if (self.mode == "drop once" and len(self.bodies) == 1) or self.mode == "drop":
            # The connection closed with no answer, as a reloading proxy closes a
            # kept-alive one.
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.mode == "reject":
            return web.json_response({"error": {"message": "max_tokens too large"}}, status=400)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b": a comment line\n\n")
            await response.write(_chunk("", role="assistant"))
            if self.mode == "cut":
                assert request.transport is not None
                request.transport.close()
                return response
            await asyncio.sleep(FIRST_TEXT_DELAY_S)
            await response.write(_chunk(""))
            if self.mode == "error":
                await response.write(_event({"error": {"message": "engine died"}}))
            await response.write(_chunk("高松"))
            await response.write(_chunk("市です。"))
            if self.mode != "no usage":
                usage = {
                    "prompt_tokens": PROMPT,
                    "completion_tokens": TOKENS,
                    "total_tokens": PROMPT + TOKENS,
                }
                await response.write(_event({"choices": [], "usage": usage}))
            await response.write(b"data: [DONE]\n\n")
            return response
        finally:
            self.in_flight -= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serving(server: SSEServer, scenario: Callable[[str], Awaitable[Any]]) -> Any:
    """The scenario's result, run against ``server`` on a free loopback port."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await scenario(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


BODY = chat_body("chat", [{"role": "user", "content": "香川県の県庁所在地は？"}], 16)


def _one_stream(server: SSEServer) -> StreamResult:
    async def scenario(url: str) -> StreamResult:
        async with ChatStreams(url, [BODY]) as send:
            return await send(0)

    result: StreamResult = asyncio.run(_serving(server, scenario))
    return result


def test_a_stream_is_timed_to_its_first_text_and_counted_by_its_usage() -> None:
    server = SSEServer()
    result = _one_stream(server)
    assert result.completion_tokens == TOKENS
    assert result.prompt_tokens == PROMPT
    assert result.first_token_s is not None
    # The role chunk and the piece without text came earlier and do not count.
    assert FIRST_TEXT_DELAY_S <= result.first_token_s < FIRST_TEXT_DELAY_S + 0.5
    assert result.seconds >= result.first_token_s
    body = server.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["model"]) == (16, 0.0, "chat")


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("reject", "HTTP 400: .*max_tokens too large"),
        ("no usage", "without usage"),
        ("error", "reported an error: .*engine died"),
    ],
)
def test_a_failed_stream_is_an_error_not_a_figure(mode: str, message: str) -> None:
    server = SSEServer()
    server.mode = mode
    with pytest.raises(RuntimeError, match=message):
        _one_stream(server)


def test_a_request_whose_connection_closed_unanswered_is_sent_again_once() -> None:
    server = SSEServer()
    server.mode = "drop once"
    result = _one_stream(server)
    assert len(server.bodies) == 2 and result.reconnects == 1
    assert result.completion_tokens == TOKENS
    assert summarize(1, [result, _one_stream(SSEServer())], 1.0).reconnects == 1
    server = SSEServer()
    server.mode = "drop"
    with pytest.raises(aiohttp.ServerDisconnectedError):
        _one_stream(server)
    assert len(server.bodies) == 2, "sent again once, not more"


def test_a_stream_cut_after_its_answer_began_is_an_error_not_sent_again() -> None:
    server = SSEServer()
    server.mode = "cut"
    with pytest.raises(aiohttp.ClientError):
        _one_stream(server)
    assert len(server.bodies) == 1


def test_a_level_keeps_its_streams_in_flight_and_sums_their_tokens() -> None:
    server = SSEServer()

    async def scenario(url: str) -> Level:
        async with ChatStreams(url, [BODY]) as send:
            return await measure_level(send, streams=4, requests=8)

    level: Level = asyncio.run(_serving(server, scenario))
    assert server.most_in_flight == 4
    assert len(server.bodies) == level.requests == 8
    assert level.completion_tokens == 8 * TOKENS
    # Two rounds of four streams, each at least the delay before its text.
    assert level.seconds >= 2 * FIRST_TEXT_DELAY_S
    assert level.tokens_per_s == pytest.approx(8 * TOKENS / level.seconds)
    assert level.first_token_ms["p50"] >= FIRST_TEXT_DELAY_S * 1000
    assert level.tokens_per_request == {"min": TOKENS, "mean": TOKENS, "max": TOKENS}
    assert (level.prompt_tokens, level.streams_without_text) == (PROMPT, 0)


def test_events_are_data_lines() -> None:
    assert parse_event(b"data: [DONE]\n") == "[DONE]"
    assert parse_event(b'data: {"choices": []}\r\n') == {"choices": []}
    assert parse_event(b"\n") is None
    assert parse_event(b": keep-alive\n") is None
    assert parse_event(b"event: message\n") is None
    with pytest.raises(RuntimeError, match="not an event object"):
        parse_event(b"data: [1, 2]\n")


def test_percentiles_and_a_summary() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([float(v) for v in range(101)], 99) == 99.0
    assert percentile([], 50) != percentile([], 50)  # NaN
    results = [
        StreamResult(0.010, 8, 100, 0.5),
        StreamResult(0.030, 8, 100, 0.5),
        StreamResult(None, 4, 100, 0.5),
    ]
    level = summarize(2, results, seconds=2.0)
    assert level.completion_tokens == 20 and level.tokens_per_s == 10.0
    assert level.first_token_ms["p50"] == pytest.approx(20.0)
    assert level.streams_without_text == 1
    assert level.tokens_per_request["min"] == 4


def _level(streams: int, tokens_per_s: float, p50: float) -> Level:
    return Level(
        streams=streams,
        requests=2,
        seconds=1.0,
        completion_tokens=int(tokens_per_s),
        tokens_per_s=tokens_per_s,
        first_token_ms={"p50": p50, "p99": p50 * 2},
        tokens_per_request={"min": 1, "mean": 1, "max": 1},
        prompt_tokens=10,
    )


def test_the_table_puts_the_sides_and_their_ratios_side_by_side() -> None:
    vllm = Side("vllm", {1: _level(1, 100.0, 40.0), 8: _level(8, 400.0, 50.0)})
    graph = Side("graph", {1: _level(1, 90.0, 47.5), 8: _level(8, 200.0, 70.0)})
    alone = Side("generator", {1: _level(1, 95.0, 42.5), 8: _level(8, 300.0, 60.0)})
    text = table([vllm, graph, alone], "vllm", "graph", "generator")
    header, rule, one, eight = text.splitlines()
    assert header.split()[0] == "streams" and "graph/vllm" in header
    assert set(rule.replace(" ", "")) == {"-"}
    assert one.split()[:3] == ["1", "100.0", "40.0"]
    assert one.split()[-2:] == ["0.90", "+5.0"]
    assert eight.split()[-2:] == ["0.50", "+10.0"]


def test_engine_arguments_become_server_flags() -> None:
    flags = server_flags(
        {
            "model": "/m/chat",
            "enforce_eager": True,
            "enable_prefix_caching": False,
            "max_num_seqs": 64,
        }
    )
    assert flags == [
        "--model",
        "/m/chat",
        "--enforce-eager",
        "--no-enable-prefix-caching",
        "--max-num-seqs",
        "64",
    ]


def test_a_side_pools_the_rounds_of_a_level() -> None:
    side = Side("graph")
    first = side.add(8, [StreamResult(0.010, 100, 50, 1.0)] * 2, 1.0, {"Ingress": 0.25})
    second = side.add(8, [StreamResult(0.030, 100, 50, 1.0)] * 2, 4.0, {"Ingress": 0.5})
    assert (first.tokens_per_s, second.tokens_per_s) == (200.0, 50.0)
    assert side.round_tokens_per_s[8] == [200.0, 50.0]
    pooled = side.levels[8]
    assert (pooled.requests, pooled.seconds, pooled.tokens_per_s) == (4, 5.0, 80.0)
    assert pooled.first_token_ms["p50"] == pytest.approx(20.0)
    assert side.cpu_seconds[8] == {"Ingress": 0.75}
