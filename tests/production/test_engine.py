"""The vLLM engine of the Generator (deployments/generator/vllm.py), built from the
production config's generator section with the overlay applied, in this process:
cancellation as vLLM itself counts it, and prompts longer than max_model_len."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

import pytest

from deployments.generator.config import VLLMGeneratorConfig
from deployments.generator.prompting import build_messages
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.generator.vllm import VLLMGenerator
from deployments.passage import Passage
from serve.bench.tiny_production import MAX_MODEL_LEN
from serve.config_file import load_app_config
from serve.demo import DEMO_CORPUS
from tests.production.conftest import ProductionConfig

QUESTION = [ChatTurn("user", "香川県の県庁所在地はどこですか？")]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the module, as a replica has: vLLM's output handler runs on the
    loop of the engine's first request."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture(scope="module")
def engine(
    production_config: ProductionConfig, loop: asyncio.AbstractEventLoop
) -> Iterator[VLLMGenerator]:
    config = load_app_config(production_config.path).generator
    assert isinstance(config, VLLMGeneratorConfig)
    generator = VLLMGenerator(config)
    try:
        yield generator
    finally:
        generator.close()


def demo_passages() -> list[Passage]:
    records = [json.loads(line) for line in DEMO_CORPUS.read_text(encoding="utf-8").splitlines()]
    return [Passage(r["id"], r["id"], r["title"], r["text"]) for r in records[:10]]


async def collect(pieces: AsyncIterator[GeneratedText]) -> list[GeneratedText]:
    return [piece async for piece in pieces]


def test_a_stream_closed_early_is_aborted_in_vllm(
    engine: VLLMGenerator, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> tuple[int, int]:
        request = GenerationRequest(messages=QUESTION, max_tokens=900, temperature=0.0)
        stream = engine.generate(request)
        assert isinstance(stream, AsyncGenerator)
        tokens = 0
        async for piece in stream:
            tokens += piece.tokens
            if tokens >= 2:
                break
        running = engine.stats()["unfinished_requests"]
        await stream.aclose()  # what Serve does when the caller goes away
        return running, engine.stats()["unfinished_requests"]

    while_reading, after_close = loop.run_until_complete(scenario())
    assert while_reading == 1, "vLLM was still generating the 900 tokens"
    assert after_close == 0, "closing the stream aborted the vLLM request"


def test_passages_are_dropped_to_fit_max_model_len(
    engine: VLLMGenerator, loop: asyncio.AbstractEventLoop
) -> None:
    passages = demo_passages()
    request = GenerationRequest(
        messages=QUESTION, passages=passages, max_tokens=MAX_MODEL_LEN - 24, temperature=0.0
    )
    full_prompt = engine.prompt.token_ids(build_messages(request, engine.prompt.settings))
    assert len(full_prompt) > MAX_MODEL_LEN, "all ten passages do not fit"
    pieces = loop.run_until_complete(collect(engine.generate(request)))
    last = pieces[-1]
    assert last.finish_reason == "length"
    assert last.prompt_tokens is not None
    # Half the context is kept for the prompt when the answer asks for more (documented).
    assert 0 < last.prompt_tokens <= MAX_MODEL_LEN // 2
    generated = sum(piece.tokens for piece in pieces)
    assert generated == MAX_MODEL_LEN - last.prompt_tokens, "the answer took the rest"
    assert engine.stats()["unfinished_requests"] == 0


def test_tokens_are_streamed_in_pieces_of_stream_interval(
    engine: VLLMGenerator, loop: asyncio.AbstractEventLoop
) -> None:
    interval = engine.config.stream_interval
    assert interval is not None and interval > 1, "serve_config.yaml sets stream_interval"
    wanted = 6 * interval + 1
    request = GenerationRequest(messages=QUESTION, max_tokens=wanted, temperature=0.0)
    pieces = loop.run_until_complete(collect(engine.generate(request)))
    counts = [piece.tokens for piece in pieces]
    assert sum(counts) == wanted, counts
    # The first token goes at once, then vLLM gathers `interval` tokens per piece (more
    # when this reader falls behind, which vLLM merges).
    assert all(n >= interval for n in counts[1:-1]), counts
    assert len(counts) <= 1 + 6, counts  # every token on its own would be 1 + 6 x interval
