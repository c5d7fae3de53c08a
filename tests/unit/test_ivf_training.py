"""IVF training on the built-in embedder's vectors: the unit-length filler component,
which no query uses, is left out of the clustering."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest
from numpy.typing import NDArray

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.factory import create_embedder, score_free_components
from deployments.index.format import EmbedderIdentity
from serve.demo import DEMO_CORPUS, DEMO_QUESTIONS
from serve.indexing.build import BuildSettings, build_faiss, build_index
from serve.indexing.corpus import read_questions

NLIST = 8


@pytest.fixture(scope="module")
def demo_vectors(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[NDArray[np.float32], NDArray[np.float32], EmbedderIdentity]:
    root = tmp_path_factory.mktemp("demo")
    build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), BuildSettings(progress=False))
    version = next((root / "versions").iterdir())
    flat = faiss.read_index(str(version / "index.faiss"))
    passages = flat.reconstruct_n(0, flat.ntotal)
    embedder = create_embedder(HashingEmbedderConfig(), version)
    questions = [q.question for q in read_questions(DEMO_QUESTIONS)]
    return passages, embedder.embed_queries(questions), embedder.identity


def _ivf(passages: NDArray[np.float32], score_free: list[int]) -> faiss.Index:
    return build_faiss(
        passages.shape[1],
        len(passages),
        lambda rows: iter([passages[rows]]),
        BuildSettings(faiss_factory=f"IVF{NLIST},Flat", progress=False),
        score_free,
    )


def _imbalance(index: faiss.Index) -> float:
    lists = faiss.extract_index_ivf(index).invlists
    assert lists is not None
    return float(lists.imbalance_factor())


def _recall_at_5(index: faiss.Index, exact: faiss.Index, queries: NDArray[np.float32]) -> float:
    _, truth = exact.search(queries, 5)
    _, found = index.search(queries, 5)
    return float(np.mean([len(set(f) & set(t)) / 5 for f, t in zip(found, truth, strict=True)]))


def test_only_the_built_in_embedders_filler_is_score_free() -> None:
    hashing = EmbedderIdentity(backend="hashing", model="m", dimension=8192)
    dense = EmbedderIdentity(backend="sentence-transformers", model="m", dimension=1024)
    assert score_free_components(hashing) == [8191]
    assert score_free_components(dense) == []


def test_the_filler_is_what_every_query_leaves_at_zero(
    demo_vectors: tuple[NDArray[np.float32], NDArray[np.float32], EmbedderIdentity],
) -> None:
    passages, queries, identity = demo_vectors
    (filler,) = score_free_components(identity)
    assert np.all(queries[:, filler] == 0)
    assert float(passages[:, filler].mean()) > 0.5  # shared by every passage


def test_ivf_trained_without_the_filler_balances_its_lists_and_finds_more(
    demo_vectors: tuple[NDArray[np.float32], NDArray[np.float32], EmbedderIdentity],
) -> None:
    passages, queries, identity = demo_vectors
    exact = faiss.IndexFlatIP(passages.shape[1])
    exact.add(passages)
    with_filler = _ivf(passages, [])
    without = _ivf(passages, score_free_components(identity))
    balance = [_imbalance(i) for i in (with_filler, without)]
    recalls = [_recall_at_5(i, exact, queries) for i in (with_filler, without)]
    assert balance[1] < balance[0]
    assert recalls[1] > recalls[0]
    # Every list probed, the IVF is exact whichever way it was trained.
    faiss.extract_index_ivf(without).nprobe = NLIST
    assert _recall_at_5(without, exact, queries) == pytest.approx(1.0)


@pytest.mark.parametrize(("factory", "warned"), [("IVF8,Flat", True), ("Flat", False)])
def test_an_approximate_index_of_lexical_vectors_is_built_with_a_warning(
    factory: str, warned: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = BuildSettings(faiss_factory=factory, progress=False)
    with caplog.at_level(logging.WARNING, logger="serve.indexing.build"):
        build_index([DEMO_CORPUS], tmp_path, HashingEmbedderConfig(), settings)
    warnings = [r.getMessage() for r in caplog.records if "lexical vectors" in r.getMessage()]
    assert bool(warnings) == warned
    if warned:
        assert factory in warnings[0] and "docs/quality.md" in warnings[0]
