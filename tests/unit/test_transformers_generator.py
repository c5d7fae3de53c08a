"""The transformers generator: HF generate streamed through TextIteratorStreamer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest
from transformers import AutoTokenizer

from deployments.generator.config import TransformersGeneratorConfig
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.generator.transformers import TransformersGenerator
from deployments.passage import Passage
from tests.conftest import TinyModels

PASSAGE = Passage("kagawa", "kagawa", "香川県", "香川県の県庁所在地は高松市である。")


def ask(max_tokens: int, **extra: object) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatTurn("user", "香川県の県庁所在地は？")],
        passages=[PASSAGE],
        max_tokens=max_tokens,
        **extra,  # type: ignore[arg-type]
    )


async def collect(engine: TransformersGenerator, request: GenerationRequest) -> list[GeneratedText]:
    return [piece async for piece in engine.generate(request)]


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels) -> TransformersGenerator:
    return TransformersGenerator(
        TransformersGeneratorConfig(
            backend="transformers", model=str(tiny_models.chat_model), max_model_len=1024
        )
    )


def test_streams_text_then_a_last_piece_with_counts(
    engine: TransformersGenerator, tiny_models: TinyModels
) -> None:
    pieces = asyncio.run(collect(engine, ask(12, temperature=0.0)))
    assert len(pieces) > 2, "text arrives in several pieces"
    last = pieces[-1]
    assert last.finish_reason == "length" and last.tokens == 12
    prompt_ids, _, _ = engine.prompt.encode(ask(12), 12, 1024)
    assert last.prompt_tokens == len(prompt_ids)
    assert all(p.finish_reason is None for p in pieces[:-1])
    assert "".join(p.text for p in pieces).strip()


def test_greedy_decoding_and_seeds_are_reproducible(engine: TransformersGenerator) -> None:
    def text(request: GenerationRequest) -> str:
        return "".join(p.text for p in asyncio.run(collect(engine, request)))

    assert text(ask(8, temperature=0.0)) == text(ask(8, temperature=0.0))
    assert text(ask(8, temperature=1.0, seed=7)) == text(ask(8, temperature=1.0, seed=7))


def test_the_answer_is_what_the_model_decodes(
    engine: TransformersGenerator, tiny_models: TinyModels
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models.chat_model))
    ids, _, _ = engine.prompt.encode(ask(10), 10, 1024)
    import torch

    with torch.inference_mode():
        output = engine.model.generate(
            torch.tensor([ids]), max_new_tokens=10, do_sample=False, pad_token_id=0
        )
    expected = tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)
    streamed = "".join(p.text for p in asyncio.run(collect(engine, ask(10, temperature=0.0))))
    assert streamed == expected


def test_a_cancelled_request_stops_and_frees_the_engine(engine: TransformersGenerator) -> None:
    async def scenario() -> tuple[float, list[GeneratedText]]:
        stream = engine.generate(ask(1000, temperature=0.0))
        assert isinstance(stream, AsyncGenerator)
        await stream.__anext__()
        started = time.perf_counter()
        await stream.aclose()  # what Serve does when the client goes away
        stopped = time.perf_counter() - started
        return stopped, await collect(engine, ask(3, temperature=0.0))

    stopped, next_answer = asyncio.run(scenario())
    assert stopped < 5, "generation stops at the next token, not after 1000"
    assert next_answer[-1].tokens == 3
