"""The model backends on a real CUDA GPU (skipped without one, and vLLM without vLLM)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
import pytest

from deployments.embedder.config import SentenceTransformersEmbedderConfig
from deployments.embedder.sentence_transformers import SentenceTransformerEmbedder
from deployments.generator.config import VLLMGeneratorConfig
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.passage import Passage
from deployments.reranker.config import CrossEncoderRerankerConfig
from deployments.reranker.cross_encoder import CrossEncoderReranker
from serve.bench import random_models
from tests.conftest import TinyModels

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
TEXTS = ["香川県の県庁所在地は高松市である。", "沖縄県の県庁所在地は那覇市である。"]


def test_embedder_on_the_gpu_matches_the_cpu(tiny_models: TinyModels) -> None:
    def engine(device: str) -> SentenceTransformerEmbedder:
        return SentenceTransformerEmbedder(
            SentenceTransformersEmbedderConfig(
                backend="sentence-transformers",
                model=str(tiny_models.embedder),
                prefix_preset="ruri-v1",
                device=device,
                dtype="float32",
            )
        )

    gpu = engine("cuda")
    assert gpu.device == "cuda"
    assert np.allclose(gpu.embed_passages(TEXTS), engine("cpu").embed_passages(TEXTS), atol=1e-4)


def test_cross_encoder_in_float16_on_the_gpu(tiny_models: TinyModels) -> None:
    def engine(device: str, dtype: str) -> CrossEncoderReranker:
        return CrossEncoderReranker(
            CrossEncoderRerankerConfig.model_validate(
                {
                    "backend": "cross-encoder",
                    "model": str(tiny_models.cross_encoder),
                    "device": device,
                    "dtype": dtype,
                }
            )
        )

    half, full = engine("cuda", "float16"), engine("cpu", "float32")
    assert np.allclose(half.score("香川", TEXTS), full.score("香川", TEXTS), atol=5e-2)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM ([gpu] extra)")
def test_vllm_streams_and_aborts(tmp_path: Path) -> None:
    from deployments.generator.vllm import VLLMGenerator

    model = random_models.build_chat_model(
        tmp_path / "chat", random_models.corpus_sentences(), hidden_size=128, heads=2
    )
    engine = VLLMGenerator(
        VLLMGeneratorConfig(
            backend="vllm",
            model=str(model),
            gpu_memory_utilization=0.3,
            max_model_len=1024,
            enforce_eager=True,
        )
    )
    request = GenerationRequest(
        messages=[ChatTurn("user", "香川県の県庁所在地は？")],
        passages=[Passage("k", "k", "香川県", TEXTS[0])],
        max_tokens=8,
        temperature=0.0,
    )

    async def scenario() -> tuple[list[GeneratedText], int]:
        pieces = [p async for p in engine.generate(request)]
        stream = engine.generate(GenerationRequest(messages=request.messages, max_tokens=500))
        assert isinstance(stream, AsyncGenerator)
        await stream.__anext__()
        await stream.aclose()
        await asyncio.sleep(0.5)
        return pieces, engine.engine.get_num_unfinished_requests()

    try:
        pieces, unfinished = asyncio.run(scenario())
    finally:
        engine.close()
    assert pieces[-1].finish_reason == "length" and sum(p.tokens for p in pieces) == 8
    assert unfinished == 0, "the abandoned request was aborted"
