from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.index.format import resolve_version_dir
from deployments.retriever.config import RetrieverConfig
from deployments.retriever.faiss_search import FaissRetriever
from serve.demo import DEMO_CORPUS
from serve.indexing.build import BuildSettings, build_index


def test_each_passage_finds_itself_first(tiny_index: Path) -> None:
    version_dir = resolve_version_dir(tiny_index)
    embedder = create_embedder(HashingEmbedderConfig(), version_dir)
    retriever = FaissRetriever(version_dir, RetrieverConfig(top_k=2))
    texts = [p.document_text for p in retriever.passages]
    results = retriever.search(embedder.embed_passages(texts), top_k=2)
    assert [hits[0].passage.id for hits in results] == ["hokkaido", "okinawa", "kyoto"]
    assert all(len(hits) == 2 for hits in results)
    assert all(hits[0].score >= hits[1].score for hits in results)
    assert results[0][0].score == pytest.approx(1.0, abs=1e-5)


def test_top_k_larger_than_index_returns_everything(tiny_index: Path) -> None:
    version_dir = resolve_version_dir(tiny_index)
    retriever = FaissRetriever(version_dir, RetrieverConfig())
    query = create_embedder(HashingEmbedderConfig(), version_dir).embed_queries(["那覇市"])
    hits = retriever.search(query, top_k=50)[0]
    assert len(hits) == 3 and hits[0].passage.id == "okinawa"


def test_wrong_query_shape_is_rejected(tiny_index: Path) -> None:
    retriever = FaissRetriever(resolve_version_dir(tiny_index), RetrieverConfig())
    with pytest.raises(ValueError, match="queries must have shape"):
        retriever.search(np.zeros((1, 7), dtype=np.float32), top_k=10)


def test_cuda_without_gpu_is_a_clear_error(tiny_index: Path) -> None:
    with pytest.raises(RuntimeError, match="FAISS sees no GPU"):
        FaissRetriever(resolve_version_dir(tiny_index), RetrieverConfig(device="cuda"))


@pytest.mark.parametrize(
    ("factory", "parameters"),
    [("HNSW16", {"efSearch": 64}), ("IVF4,Flat", {"nprobe": 4})],
)
def test_approximate_indexes_build_and_search(
    tmp_path: Path, factory: str, parameters: dict[str, float]
) -> None:
    root = tmp_path / "index"
    settings = BuildSettings(faiss_factory=factory, progress=False)
    build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), settings)
    version_dir = resolve_version_dir(root)
    retriever = FaissRetriever(version_dir, RetrieverConfig(search_parameters=parameters))
    embedder = create_embedder(HashingEmbedderConfig(), version_dir)
    texts = [retriever.passages[i].document_text for i in range(0, 188, 17)]
    results = retriever.search(embedder.embed_passages(texts), top_k=3)
    found = [hits[0].passage.id for hits in results]
    assert found == [retriever.passages[i].id for i in range(0, 188, 17)]


def test_a_batch_finds_what_its_queries_find_one_by_one(demo_index: Path) -> None:
    """Batches go through FAISS's matrix-product path, single queries through its scan."""
    version_dir = resolve_version_dir(demo_index)
    retriever = FaissRetriever(version_dir, RetrieverConfig(top_k=10, blas_min_queries=2))
    embedder = create_embedder(HashingEmbedderConfig(), version_dir)
    queries = embedder.embed_queries(["県庁所在地はどこか", "日本三景", "温泉が有名な県", "雪"])
    batched = retriever.search(queries, top_k=10)
    assert faiss.cvar.distance_compute_blas_threshold == 2 * retriever.dimension - 1
    for row, hits in zip(queries, batched, strict=True):
        alone = retriever.search(row[None, :], top_k=10)[0]
        assert [h.passage.id for h in hits] == [h.passage.id for h in alone]
        assert [h.score for h in hits] == pytest.approx([h.score for h in alone], abs=1e-5)
