"""Engines the reliability tests put in a stage (``build_graph(engines=...)``): the
built-in ones, plus behaviour a test switches on through the request itself.

In the question (the last user message):

- ``[hold]``: the generator holds the request HOLD_S seconds before answering;
- ``[hang]``: the generator never answers;
- ``[drip]``: the generator streams slowly (DRIP_S between pieces);
- ``[wedge]``: the embedder replica wedges: this and every later call blocks for good,
  the health probe included, until Serve replaces the replica.

A replica started while the file named by SLOW_START_ENV exists takes that many
seconds (the file's content) to start, so that a killed stage stays down long enough
to be observed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from deployments.embedder.config import EmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.generator.config import GeneratorConfig
from deployments.generator.factory import create_generator
from deployments.generator.protocol import GeneratedText, GenerationRequest
from deployments.index.format import EmbedderIdentity
from deployments.reranker.config import RerankerConfig
from deployments.reranker.factory import create_reranker

HOLD_S = 4.0
DRIP_S = 0.3
SLOW_START_ENV = "JARAG_TEST_SLOW_START_FILE"


def _slow_start() -> None:
    path = os.environ.get(SLOW_START_ENV)
    if path and Path(path).exists():
        time.sleep(float(Path(path).read_text() or "0"))


class ScriptedGenerator:
    def __init__(self, config: GeneratorConfig) -> None:
        _slow_start()
        self.inner = create_generator(config)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        question = request.question
        if "[hang]" in question:
            await asyncio.Event().wait()
        if "[hold]" in question:
            await asyncio.sleep(HOLD_S)
        drip = "[drip]" in question
        count = 0
        async for piece in self.inner.generate(request):
            yield piece
            count += 1
        while drip:  # an answer that goes on until the caller stops it
            await asyncio.sleep(DRIP_S)
            count += 1
            yield GeneratedText(f"({count})")


class SlowStartReranker:
    def __init__(self, config: RerankerConfig, index_dir: Path) -> None:
        _slow_start()
        self.inner = create_reranker(config, index_dir)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def score(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]:
        return self.inner.score(query, documents)

    def relevance(self, raw_scores: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.inner.relevance(raw_scores)


class WedgingEmbedder:
    def __init__(self, config: EmbedderConfig, index_dir: Path) -> None:
        _slow_start()
        self.inner = create_embedder(config, index_dir)
        self.wedged = threading.Event()
        self.never = threading.Event()

    @property
    def identity(self) -> EmbedderIdentity:
        return self.inner.identity

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self._maybe_wedge(texts)
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self._maybe_wedge(texts)
        return self.inner.embed_passages(texts)

    def _maybe_wedge(self, texts: Sequence[str]) -> None:
        if any("[wedge]" in t for t in texts):
            self.wedged.set()
        if self.wedged.is_set():
            self.never.wait()
