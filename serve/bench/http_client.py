"""The benchmark's HTTP client: RAG chat requests over keep-alive loopback connections.

Bodies are encoded once, before the clock starts; a streamed answer is read event by
event, and its time to first token is the time to the first event carrying text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from types import TracebackType

import aiohttp


class ChatClient:
    """POSTs /v1/chat/completions; one connection per concurrent client, reused."""

    def __init__(
        self, base_url: str, questions: Sequence[str], stream: bool, model: str | None = None
    ) -> None:
        """``model``: sent as the request's model (none: the service's RAG model); naming
        the generator's model skips retrieval."""
        self.url = f"{base_url.rstrip('/')}/v1/chat/completions"
        self.stream = stream
        self._bodies = [
            json.dumps(
                {
                    "messages": [{"role": "user", "content": q}],
                    "stream": stream,
                    **({"model": model} if model else {}),
                },
                ensure_ascii=False,
            ).encode()
            for q in questions
        ]
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChatClient:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=120),
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def __call__(self, number: int) -> float | None:
        """Sends request ``number``; returns the time to the first token of a stream."""
        assert self._session is not None, "use ChatClient in an async with block"
        body = self._bodies[number % len(self._bodies)]
        start = time.perf_counter()
        async with self._session.post(self.url, data=body) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
            if not self.stream:
                payload = await response.read()
                if b'"choices"' not in payload:
                    raise RuntimeError(f"not a chat completion: {payload[:200]!r}")
                return None
            first: float | None = None
            async for line in response.content:
                if first is None and line.startswith(b"data: {") and _has_text(line[6:]):
                    first = time.perf_counter() - start
            if first is None:
                raise RuntimeError("the stream carried no text")
            return first


def _has_text(event: bytes) -> bool:
    choices = json.loads(event).get("choices") or []
    return any(c.get("delta", {}).get("content") for c in choices)
