from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from deployments.embedder.config import HashingEmbedderConfig, SentenceTransformersEmbedderConfig
from serve.bench import random_models
from serve.demo import DEMO_CORPUS
from serve.indexing.build import BuildSettings, build_index
from tests.support import write_jsonl

TINY_DOCUMENTS = [
    {
        "id": "hokkaido",
        "title": "北海道",
        "text": (
            "北海道は日本の最北端に位置する。道庁所在地は札幌市である。冬は寒さが厳しく雪が多い。"
        ),
        "url": "https://example.org/hokkaido",
    },
    {
        "id": "okinawa",
        "title": "沖縄県",
        "text": (
            "沖縄県は日本の最南端に位置する県である。県庁所在地は那覇市である。"
            "一年を通して温暖である。"
        ),
    },
    {
        "id": "kyoto",
        "title": "京都府",
        "text": "京都府は近畿地方にある。府庁所在地は京都市である。京都市には多くの寺社がある。",
    },
]


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo corpus indexed with the built-in embedder (built once)."""
    root = tmp_path_factory.mktemp("demo-index")
    build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), BuildSettings(progress=False))
    return root


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "tiny.jsonl", TINY_DOCUMENTS)


@pytest.fixture
def tiny_index(tiny_corpus: Path, tmp_path: Path) -> Path:
    root = tmp_path / "index"
    build_index([tiny_corpus], root, HashingEmbedderConfig(), BuildSettings(progress=False))
    return root


@dataclass(frozen=True)
class TinyModels:
    """Randomly initialised models built once per session, loaded by path like hub models."""

    embedder: Path
    """sentence-transformers BERT (2 layers, hidden 32) with a WordPiece tokenizer."""
    mecab_embedder: Path
    """The same with a MeCab word-segmenting tokenizer, as ruri v1 has (needs fugashi)."""
    cross_encoder: Path
    """One-logit BERT sequence classifier."""
    chat_model: Path
    """Llama causal LM with a byte-level BPE tokenizer and the Llama 3 chat template."""


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    root = tmp_path_factory.mktemp("tiny-models")
    sentences = random_models.corpus_sentences()
    shape = random_models.ENCODER_SHAPES["tiny"]
    tokenizer = random_models.wordpiece_tokenizer(sentences)
    mecab = random_models.mecab_tokenizer(root / "mecab-vocab", sentences)
    return TinyModels(
        embedder=random_models.build_embedder(root / "embedder", tokenizer, shape),
        mecab_embedder=random_models.build_embedder(root / "mecab-embedder", mecab, shape),
        cross_encoder=random_models.build_cross_encoder(root / "cross-encoder", tokenizer, shape),
        chat_model=random_models.build_chat_model(root / "chat", sentences),
    )


def tiny_embedder_config(models: TinyModels) -> SentenceTransformersEmbedderConfig:
    return SentenceTransformersEmbedderConfig(
        backend="sentence-transformers",
        model=str(models.embedder),
        prefix_preset="ruri-v1",
        max_batch_size=16,
    )


@pytest.fixture(scope="session")
def st_index(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo corpus indexed with the tiny sentence-transformers embedder."""
    root = tmp_path_factory.mktemp("st-index")
    build_index(
        [DEMO_CORPUS], root, tiny_embedder_config(tiny_models), BuildSettings(progress=False)
    )
    return root
