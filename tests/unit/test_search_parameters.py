from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np
import pytest
from numpy.typing import NDArray

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.index.format import resolve_version_dir
from deployments.index.passages import PassageStore
from deployments.passage import Hit
from deployments.retriever.config import IndexConfig, KnowledgeBaseConfig, RetrieverConfig
from deployments.retriever.deployment import Retriever
from deployments.retriever.faiss_search import FaissRetriever
from deployments.retriever.filters import Condition, MetadataFilter
from deployments.retriever.search_parameters import SearchParameters, faiss_parameters
from serve.demo import DEMO_CORPUS
from serve.indexing.build import BuildSettings, build_index
from serve.indexing.factory import choose_factory, nlist_for, pq_subquantizers
from serve.indexing.importing import DeclaredEmbedder, ImportSettings, import_index
from tests.support import write_jsonl

GIB = 2**30


def _vectors(n: int, dim: int, seed: int) -> NDArray[np.float32]:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    faiss.normalize_L2(x)
    return x


def _recall(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


@pytest.fixture(scope="module")
def data() -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    corpus, queries = _vectors(4_000, 32, 0), _vectors(30, 32, 1)
    exact = faiss.IndexFlatIP(32)
    exact.add(corpus)
    return corpus, queries, exact.search(queries, 10)[1]


def test_nprobe_overrides_the_index_setting_for_one_search(
    data: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]],
) -> None:
    corpus, queries, truth = data
    index: Any = faiss.index_factory(32, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(corpus)
    index.add(corpus)
    index.nprobe = 1
    every = index.search(queries, 10, params=faiss_parameters(index, SearchParameters(nprobe=99)))
    assert _recall(every[1], truth) == 1.0  # capped at nlist: every list probed
    kept = faiss_parameters(index, SearchParameters(ef_search=5))  # not an IVF setting
    assert kept.nprobe == 1
    assert _recall(index.search(queries, 10)[1], truth) < 1.0
    assert index.nprobe == 1  # the index's own setting is untouched


def test_ef_search_and_k_factor_reach_hnsw_and_a_re_scored_ivf_pq(
    data: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]],
) -> None:
    corpus, queries, truth = data
    hnsw: Any = faiss.index_factory(32, "HNSW8", faiss.METRIC_INNER_PRODUCT)
    hnsw.add(corpus)
    assert faiss_parameters(hnsw, SearchParameters(ef_search=300)).efSearch == 300
    assert faiss_parameters(hnsw, SearchParameters()).efSearch == hnsw.hnsw.efSearch
    refined = faiss.index_factory(32, "IVF16,PQ8x4np,RFlat", faiss.METRIC_INNER_PRODUCT)
    refined.train(corpus)
    refined.add(corpus)
    params = faiss_parameters(refined, SearchParameters(nprobe=16, k_factor=100))
    assert params.k_factor == 100

    def found(nprobe: int, k_factor: float) -> NDArray[np.int64]:
        wanted = SearchParameters(nprobe=nprobe, k_factor=k_factor)
        return refined.search(queries, 10, params=faiss_parameters(refined, wanted))[1]

    deep = refined.search(queries, 10, params=params)[1]
    assert _recall(deep, truth) > 0.95
    assert _recall(found(1, 100), truth) < 0.9  # nprobe reaches the IVF-PQ below
    assert _recall(found(16, 1), truth) < 0.9  # k_factor reaches the re-scoring
    assert faiss_parameters(faiss.IndexFlatIP(32), SearchParameters(nprobe=4)) is not None
    assert faiss_parameters(faiss.IndexLSH(32, 64), SearchParameters()) is None


def test_search_parameters_are_hashable_and_validated() -> None:
    assert hash(SearchParameters(nprobe=8)) == hash(SearchParameters(nprobe=8))
    with pytest.raises(ValueError):
        SearchParameters(nprobe=0)
    with pytest.raises(ValueError):
        SearchParameters.model_validate({"nprob": 3})


@pytest.mark.parametrize("mmap", [True, False])
def test_retriever_searches_a_memory_mapped_re_scored_index_with_per_call_parameters(
    tmp_path: Path, mmap: bool
) -> None:
    root = tmp_path / "index"
    settings = BuildSettings(faiss_factory="IVF4,PQ8x4np,RFlat", progress=False)
    build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), settings)
    version_dir = resolve_version_dir(root)
    config = RetrieverConfig(search_parameters={"nprobe": 1, "k_factor_rf": 1}, mmap=mmap)
    retriever = FaissRetriever(version_dir, config)
    embedder = create_embedder(HashingEmbedderConfig(), version_dir)
    rows = list(range(0, len(retriever.passages), 7))
    texts = [retriever.passages[i].document_text for i in rows]
    wide = SearchParameters(nprobe=4, k_factor=50)
    results = retriever.search(embedder.embed_passages(texts), top_k=3, params=wide)
    assert [hits[0].passage.id for hits in results] == [retriever.passages[i].id for i in rows]
    assert all(hits[0].score == pytest.approx(1.0, abs=1e-4) for hits in results)


def test_the_factory_rule_follows_size_and_budget() -> None:
    assert choose_factory(100_000, 1024, 8 * GIB, 100_000) == "Flat"
    assert choose_factory(100_000, 1024, 0.1 * GIB, 100_000).startswith("IVF")
    assert choose_factory(1_000_000, 1024, 8 * GIB, 100_000) == "HNSW32"
    # Japanese Wikipedia: 5.3M x 1,024 is 20 GiB of vectors.
    assert choose_factory(5_300_000, 1024, 8 * GIB, 320_000) == "IVF8192,SQ8"
    assert choose_factory(5_300_000, 1024, 2 * GIB, 320_000) == "IVF8192,PQ64np,RFlat"
    # Trained on 100,000 vectors, 8,192 lists would have too few points each.
    assert choose_factory(5_300_000, 1024, 2 * GIB, 100_000) == "IVF2048,PQ64np,RFlat"
    assert nlist_for(5_300_000, 100_000) * 39 <= 100_000
    assert pq_subquantizers(768) == 64 and pq_subquantizers(100) == 4


def test_auto_build_records_the_chosen_factory(tmp_path: Path) -> None:
    root = tmp_path / "index"
    tiny_budget = BuildSettings(faiss_factory="auto", ram_budget_gib=1e-6, progress=False)
    manifest = build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), tiny_budget)
    assert manifest.faiss_factory.startswith("IVF") and manifest.faiss_factory.endswith("RFlat")
    roomy = BuildSettings(faiss_factory="auto", progress=False)
    assert build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), roomy).faiss_factory == "Flat"


class RecordingRetriever(FaissRetriever):
    """The FAISS engine, noting the parameters of every search call it gets."""

    calls: ClassVar[list[tuple[int, SearchParameters | None]]] = []

    def search(
        self,
        queries: NDArray[np.float32],
        top_k: int,
        where: MetadataFilter | None = None,
        params: SearchParameters | None = None,
    ) -> list[list[Hit]]:
        RecordingRetriever.calls.append((len(queries), params))
        return super().search(queries, top_k, where, params)


def test_the_retriever_deployment_searches_with_the_requests_parameters(tmp_path: Path) -> None:
    root = tmp_path / "index"
    settings = BuildSettings(faiss_factory="IVF4,Flat", progress=False)
    build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), settings)

    def engine(config: RetrieverConfig, index: IndexConfig, version_dir: Path) -> FaissRetriever:
        return RecordingRetriever(version_dir, config)

    retriever = Retriever(
        RetrieverConfig(search_parameters={"nprobe": 1}),
        [KnowledgeBaseConfig(name="wiki", path=str(root))],
        engine_cls=engine,
    )
    version_dir = resolve_version_dir(root)
    passages = PassageStore(version_dir)
    embedder = create_embedder(HashingEmbedderConfig(), version_dir)
    vectors = embedder.embed_passages([passages[i].document_text for i in range(0, 188, 9)])
    wide = SearchParameters(nprobe=4)

    async def ask() -> list[list[Hit]]:
        every = [retriever.search(v, 1, params=wide) for v in vectors]
        return list(await asyncio.gather(*every, retriever.search(vectors[0], 1)))

    RecordingRetriever.calls.clear()
    found = asyncio.run(ask())
    assert [hits[0].passage.id for hits in found[:-1]] == [
        passages[i].id for i in range(0, 188, 9)
    ]  # every list probed: each passage finds itself
    assert {params for _, params in RecordingRetriever.calls} == {wide, None}
    # Requests with different parameters never share a FAISS call.
    assert sum(n for n, params in RecordingRetriever.calls if params == wide) == len(vectors)
    passages.close()


GROUP_0 = MetadataFilter((Condition.create("group", "=", 0),))


@pytest.fixture(scope="module")
def vectors64() -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Corpus and queries of the built-in embedder's least dimension, to import."""
    return _vectors(4_000, 64, 2), _vectors(30, 64, 3)


def _imported(folder: Path, vectors: NDArray[np.float32], index: faiss.Index) -> FaissRetriever:
    """``index`` (made with the FAISS API from ``vectors``) imported with passages whose
    metadata ``group`` is the row number modulo 4 (row 8 alone has a ``tag``); the
    engine over it, at the index's own settings (nprobe 1, efSearch 16)."""
    records = [
        {"id": f"p{i}", "title": f"段落{i}", "text": f"段落{i}の本文", "group": i % 4}
        | ({"tag": "稀"} if i == 8 else {})
        for i in range(len(vectors))
    ]
    passages = write_jsonl(folder / "passages.jsonl", records)
    faiss.write_index(index, str(folder / "index.faiss"))
    dimension = vectors.shape[1]
    config = HashingEmbedderConfig(dimension=dimension)
    declared = DeclaredEmbedder(config=config, dimension=dimension)
    root = folder / "index"
    import_index(
        passages,
        root,
        declared,
        faiss_index=folder / "index.faiss",
        settings=ImportSettings(progress=False),
    )
    return FaissRetriever(resolve_version_dir(root), RetrieverConfig())


def _filtered_truth(
    corpus: NDArray[np.float32], queries: NDArray[np.float32], k: int
) -> NDArray[np.int64]:
    rows = np.arange(0, len(corpus), 4)
    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus[rows])
    return rows[exact.search(queries, k)[1]]


def _rows(hits: list[list[Hit]]) -> NDArray[np.int64]:
    return np.array([[int(h.passage.id[1:]) for h in row] for row in hits])


def test_a_filtered_ivf_search_probes_the_lists_the_request_asks_for(
    vectors64: tuple[NDArray[np.float32], NDArray[np.float32]], tmp_path: Path
) -> None:
    corpus, queries = vectors64
    ivf: Any = faiss.index_factory(64, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    ivf.train(corpus)
    ivf.add(corpus)
    ivf.nprobe = 1
    retriever = _imported(tmp_path, corpus, ivf)
    truth = _filtered_truth(corpus, queries, 10)
    one = _rows(retriever.search(queries, 10, GROUP_0, SearchParameters(nprobe=1)))
    every = _rows(retriever.search(queries, 10, GROUP_0, SearchParameters(nprobe=16)))
    default = _rows(retriever.search(queries, 10, GROUP_0))
    assert (every % 4 == 0).all() and (one % 4 == 0).all() and one.shape == (30, 10)
    assert _recall(every, truth) == 1.0
    assert _recall(one, truth) < 0.9  # one list probed: matches in the others missed
    assert np.array_equal(default, one), "without parameters: the index's own nprobe"
    # Where the probed list holds too few matching rows, every list is still probed.
    rare = MetadataFilter((Condition.create("tag", "not empty"),))
    assert [row[0].passage.id for row in retriever.search(queries, 3, rare)] == ["p8"] * 30
    retriever.close()


def test_a_filtered_hnsw_search_keeps_the_candidates_the_request_asks_for(
    vectors64: tuple[NDArray[np.float32], NDArray[np.float32]], tmp_path: Path
) -> None:
    corpus, queries = vectors64
    hnsw: Any = faiss.index_factory(64, "HNSW8", faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(corpus)
    retriever = _imported(tmp_path, corpus, hnsw)
    truth = _filtered_truth(corpus, queries, 10)
    narrow = _rows(retriever.search(queries, 10, GROUP_0, SearchParameters(ef_search=10)))
    deep = _rows(retriever.search(queries, 10, GROUP_0, SearchParameters(ef_search=1000)))
    assert narrow.shape == deep.shape == (30, 10)
    assert _recall(deep, truth) > 0.99
    assert _recall(narrow, truth) < 0.8
    retriever.close()


def test_a_filtered_search_of_a_re_scored_index_takes_the_requests_k_factor(
    vectors64: tuple[NDArray[np.float32], NDArray[np.float32]], tmp_path: Path
) -> None:
    corpus, queries = vectors64
    refined: Any = faiss.index_factory(64, "IVF16,PQ8x4np,RFlat", faiss.METRIC_INNER_PRODUCT)
    refined.train(corpus)
    refined.add(corpus)
    retriever = _imported(tmp_path, corpus, refined)
    truth = _filtered_truth(corpus, queries, 10)

    def found(nprobe: int, k_factor: float) -> NDArray[np.int64]:
        wanted = SearchParameters(nprobe=nprobe, k_factor=k_factor)
        return _rows(retriever.search(queries, 10, GROUP_0, wanted))

    assert _recall(found(16, 100), truth) > 0.95
    assert _recall(found(16, 1), truth) < 0.9  # k_factor reaches the re-scoring
    assert _recall(found(1, 100), truth) < 0.9  # nprobe reaches the IVF-PQ below
    retriever.close()
