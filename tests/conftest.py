from __future__ import annotations

from pathlib import Path

import pytest

from deployments.embedder.config import HashingEmbedderConfig
from serve.indexing import BuildSettings, build_index
from tests.support import DEMO_CORPUS, write_jsonl

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
