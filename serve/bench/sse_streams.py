"""Streamed chat completions measured stream by stream: time to first token, tokens
generated, and the figures of a level of concurrent streams.

Counted the same way for every server (this service's graph, vLLM's own OpenAI server,
a DeploymentHandle):

- tokens: the completion tokens the server reports (``usage`` of the stream's last
  chunk, asked for with ``stream_options.include_usage``), not the text, since a token
  may decode to no text of its own (part of a character);
- time to first token: from sending the request to the first chunk whose delta
  carries text (a role-only or empty chunk does not count);
- output tokens per second of a level: all its completion tokens over the wall time
  from its first request sent to its last stream ended.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import aiohttp
import numpy as np


@dataclass(frozen=True)
class StreamResult:
    """One streamed answer."""

    first_token_s: float | None
    """None when no chunk carried text."""
    completion_tokens: int
    prompt_tokens: int | None
    seconds: float
    reconnects: int = 0
    """1 when the request was sent again on a new connection (see ``ChatStreams``)."""


@dataclass
class StreamReader:
    """Reads one stream's server-sent events as they arrive."""

    started: float
    first_token_s: float | None = None
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    done: bool = False

    def feed(self, line: bytes, now: float) -> None:
        """One line of the response body (events are ``data: <json>`` lines)."""
        event = parse_event(line)
        if event is None:
            return
        if isinstance(event, str):  # [DONE]
            self.done = True
            return
        if "error" in event:
            raise RuntimeError(f"the stream reported an error: {event['error']}")
        if self.first_token_s is None and _has_text(event):
            self.first_token_s = now - self.started
        usage = event.get("usage")
        if usage:
            self.completion_tokens = int(usage["completion_tokens"])
            self.prompt_tokens = int(usage["prompt_tokens"])

    def result(self, now: float) -> StreamResult:
        if self.completion_tokens is None:
            raise RuntimeError("the stream ended without usage (stream_options.include_usage)")
        return StreamResult(
            self.first_token_s, self.completion_tokens, self.prompt_tokens, now - self.started
        )


def parse_event(line: bytes) -> dict[str, Any] | str | None:
    """A ``data:`` line's JSON object, ``"[DONE]"``, or None for any other line (blank
    separators, comments, other fields)."""
    line = line.strip()
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    if data == b"[DONE]":
        return "[DONE]"
    event = json.loads(data)
    if not isinstance(event, dict):
        raise RuntimeError(f"not an event object: {data[:200]!r}")
    return event


def _has_text(event: dict[str, Any]) -> bool:
    return any((c.get("delta") or {}).get("content") for c in event.get("choices") or [])


def chat_body(
    model: str, messages: Sequence[dict[str, str]], max_tokens: int, **sampling: Any
) -> bytes:
    """A streamed chat completion request that reports its usage at the end; greedy
    unless ``sampling`` says otherwise."""
    body = {
        "model": model,
        "messages": list(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0.0,
        **sampling,
    }
    return json.dumps(body, ensure_ascii=False).encode()


Send = Callable[[int], Awaitable[StreamResult]]
"""Sends stream number ``n`` and reads it to its end."""


class ChatStreams:
    """POSTs streamed chat completions to ``base_url``/v1/chat/completions, one
    keep-alive connection per concurrent stream; request ``n`` sends ``bodies[n % len]``."""

    def __init__(self, base_url: str, bodies: Sequence[bytes], timeout_s: float = 300) -> None:
        self.url = f"{base_url.rstrip('/')}/v1/chat/completions"
        self.bodies = list(bodies)
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChatStreams:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def __call__(self, number: int) -> StreamResult:
        assert self._session is not None, "use ChatStreams in an async with block"
        body = self.bodies[number % len(self.bodies)]
        started = time.perf_counter()
        for reconnects in range(2):
            reader = StreamReader(started)
            answered = False
            try:
                async with self._session.post(self.url, data=body) as response:
                    answered = True
                    if response.status != 200:
                        text = (await response.text())[:300]
                        raise RuntimeError(f"HTTP {response.status}: {text}")
                    async for line in response.content:
                        reader.feed(line, time.perf_counter())
                break
            except aiohttp.ServerDisconnectedError:
                # A kept-alive connection the server closed as the request went out
                # (HAProxy does when it reloads its config on a replica change): sent
                # again once on a new connection, as HTTP clients do; the wait counts.
                if answered or reconnects:
                    raise
        if not reader.done:
            raise RuntimeError("the stream ended without data: [DONE]")
        return replace(reader.result(time.perf_counter()), reconnects=reconnects)


@dataclass(frozen=True)
class Level:
    """A level of ``streams`` concurrent streams: each stream sends its next request as
    soon as its previous answer has ended, until ``requests`` have been sent."""

    streams: int
    requests: int
    seconds: float
    """Wall time from the first request sent to the last stream ended."""
    completion_tokens: int
    tokens_per_s: float
    first_token_ms: dict[str, float]
    """p50 and p99 of the streams' time to first token."""
    tokens_per_request: dict[str, float]
    """min, mean and max completion tokens of one stream."""
    prompt_tokens: int | None
    streams_without_text: int = 0
    reconnects: int = 0
    """Requests sent again on a new connection after the server closed a kept-alive one."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``th percentile (linear interpolation, numpy's default); NaN of nothing."""
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(streams: int, results: Sequence[StreamResult], seconds: float) -> Level:
    first = [r.first_token_s * 1000 for r in results if r.first_token_s is not None]
    tokens = [r.completion_tokens for r in results]
    total = sum(tokens)
    prompts = {r.prompt_tokens for r in results if r.prompt_tokens is not None}
    return Level(
        streams=streams,
        requests=len(results),
        seconds=seconds,
        completion_tokens=total,
        tokens_per_s=total / seconds if seconds > 0 else float("nan"),
        first_token_ms={"p50": percentile(first, 50), "p99": percentile(first, 99)},
        tokens_per_request={
            "min": float(min(tokens, default=0)),
            "mean": total / len(tokens) if tokens else float("nan"),
            "max": float(max(tokens, default=0)),
        },
        prompt_tokens=max(prompts) if prompts else None,
        streams_without_text=sum(1 for r in results if r.first_token_s is None),
        reconnects=sum(r.reconnects for r in results),
    )


async def run_streams(send: Send, streams: int, requests: int) -> tuple[list[StreamResult], float]:
    """``requests`` streams sent by ``streams`` concurrent senders (closed loop): each
    sender sends its next request as soon as its last answer has ended. Returns the
    streams and the wall time from the first request sent to the last stream ended."""
    if streams < 1 or requests < 1:
        raise ValueError("streams and requests must be at least 1")
    numbers = iter(range(requests))
    results: list[StreamResult] = []

    async def sender() -> None:
        for number in numbers:
            results.append(await send(number))

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(min(streams, requests))))
    return results, time.perf_counter() - start


async def measure_level(send: Send, streams: int, requests: int) -> Level:
    """One level measured once (see ``run_streams``)."""
    results, seconds = await run_streams(send, streams, requests)
    return summarize(streams, results, seconds)


@dataclass
class Side:
    """One server's levels, by number of streams; a level measured in several rounds
    pools its rounds' streams and wall times."""

    name: str
    levels: dict[int, Level] = field(default_factory=dict)
    cpu_seconds: dict[int, dict[str, float]] = field(default_factory=dict)
    """Per level: CPU seconds each process group spent during it (where measured)."""
    round_tokens_per_s: dict[int, list[float]] = field(default_factory=dict)
    """Per level: each round's own output tokens per second, in round order."""
    load: dict[int, list[float]] = field(default_factory=dict)
    """Per level: the machine's 1-minute load average as each round began."""
    _results: dict[int, list[StreamResult]] = field(default_factory=dict, repr=False)
    _seconds: dict[int, float] = field(default_factory=dict, repr=False)

    def add(
        self,
        streams: int,
        results: Sequence[StreamResult],
        seconds: float,
        cpu_seconds: dict[str, float] | None = None,
    ) -> Level:
        """One more round of the level ``streams``; returns that round's own figures."""
        pooled = self._results.setdefault(streams, [])
        pooled.extend(results)
        self._seconds[streams] = self._seconds.get(streams, 0.0) + seconds
        self.levels[streams] = summarize(streams, pooled, self._seconds[streams])
        spent = self.cpu_seconds.setdefault(streams, {})
        for group, value in (cpu_seconds or {}).items():
            spent[group] = round(spent.get(group, 0.0) + value, 3)
        this_round = summarize(streams, results, seconds)
        self.round_tokens_per_s.setdefault(streams, []).append(this_round.tokens_per_s)
        return this_round


def ratios(graph: Side, baseline: Side) -> dict[int, float]:
    """The graph's output tokens per second over the baseline's, per common level."""
    return {
        streams: level.tokens_per_s / baseline.levels[streams].tokens_per_s
        for streams, level in graph.levels.items()
        if streams in baseline.levels and baseline.levels[streams].tokens_per_s > 0
    }


def first_token_added_ms(graph: Side, alone: Side) -> dict[int, float]:
    """The graph's p50 time to first token minus the generator alone's, per level."""
    return {
        streams: level.first_token_ms["p50"] - alone.levels[streams].first_token_ms["p50"]
        for streams, level in graph.levels.items()
        if streams in alone.levels
    }


def table(sides: Sequence[Side], baseline: str | None, graph: str, alone: str | None = None) -> str:
    """A plain-text table: tokens/s and time to first token (p50/p99 ms) of every side
    per level; with ``baseline``, the ``graph`` side's tokens/s ratio to it; with
    ``alone``, the p50 the graph adds to the generator alone's."""
    by_name = {s.name: s for s in sides}
    levels = sorted({n for s in sides for n in s.levels})
    ratio = ratios(by_name[graph], by_name[baseline]) if baseline else {}
    added = first_token_added_ms(by_name[graph], by_name[alone]) if alone else {}
    header = ["streams"]
    for side in sides:
        header += [f"{side.name} tok/s", f"{side.name} TTFT p50/p99 ms"]
    if baseline:
        header.append(f"{graph}/{baseline} tok/s")
    if alone:
        header.append(f"{graph}-{alone} TTFT p50 ms")
    rows = [header]
    for streams in levels:
        row = [str(streams)]
        for side in sides:
            level = side.levels.get(streams)
            if level is None:
                row += ["-", "-"]
                continue
            ttft = level.first_token_ms
            row += [f"{level.tokens_per_s:.1f}", f"{ttft['p50']:.1f} / {ttft['p99']:.1f}"]
        if baseline:
            row.append(f"{ratio[streams]:.2f}" if streams in ratio else "-")
        if alone:
            row.append(f"{added[streams]:+.1f}" if streams in added else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
