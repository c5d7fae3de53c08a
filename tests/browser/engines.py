"""A generator engine for the page's tests: the built-in extractive answer streamed a
few characters at a time, with a pause between pieces, so that a browser sees it arrive.

A question containing ``[markdown]`` is answered with MARKDOWN (what an LLM may write);
one containing ``[endless]`` streams until the caller stops it. ``cancelled`` is set
when a generation is closed before its end (the client stopped it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.generator.factory import create_generator
from deployments.generator.protocol import GeneratedText, GenerationRequest

MARKDOWN = """## 北海道の概要

道庁所在地は**札幌市**です[1]。*面積*は最大です。

- 日本の最北端
- 冬は `雪` が多い

1. 一つ目
2. 二つ目

[安全なリンク](https://example.org/safe) と [危険なリンク](javascript:window.__pwned=4)

```html
<b>太字ではない</b><script>window.__pwned = 5</script>
```
"""


class PacedGenerator:
    def __init__(self, piece_chars: int = 3, pause_s: float = 0.06) -> None:
        self.inner = create_generator(ExtractiveGeneratorConfig())
        self.piece_chars = piece_chars
        self.pause_s = pause_s
        self.started = threading.Event()
        self.cancelled = threading.Event()

    @property
    def model_name(self) -> str:
        return "paced-extractive"

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        self.started.set()
        finished = False
        try:
            if "[endless]" in request.question:
                while True:
                    await asyncio.sleep(self.pause_s)
                    yield GeneratedText("…")
            if "[markdown]" in request.question:
                text = MARKDOWN
            else:
                text = "".join([p.text async for p in self.inner.generate(request)])
            size = self.piece_chars
            pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
            for number, piece in enumerate(pieces, start=1):
                await asyncio.sleep(self.pause_s)
                last = number == len(pieces)
                yield GeneratedText(piece, finish_reason="stop" if last else None)
            finished = True
        finally:
            if not finished:
                self.cancelled.set()


class HeldStartGenerator:
    """The built-in generator, whose replica waits to start while ``hold_file`` exists:
    a killed replica then stays down until the test lets its replacement start."""

    def __init__(self, config: ExtractiveGeneratorConfig, hold_file: str) -> None:
        while Path(hold_file).exists():
            time.sleep(0.1)
        self.inner = create_generator(config)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        return self.inner.generate(request)
