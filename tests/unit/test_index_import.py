"""`jarag index import`: a FAISS index made with the FAISS API (or bare vectors) from the
built-in embedder's vectors, with its passages, searches exactly like a build."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from numpy.typing import NDArray

from deployments.embedder.config import HashingEmbedderConfig, SentenceTransformersEmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.embedder.sentence_transformers import sentence_transformers_identity
from deployments.index.format import (
    check_embedder,
    list_versions,
    read_manifest,
    resolve_version_dir,
)
from deployments.index.passages import PassageStore
from deployments.retriever.config import RetrieverConfig
from deployments.retriever.faiss_search import FaissRetriever
from serve.cli import main
from serve.demo import DEMO_QUESTIONS
from serve.indexing.importing import (
    DeclaredEmbedder,
    ImportSettings,
    IndexImportError,
    import_index,
)

HASHING = DeclaredEmbedder(
    config=HashingEmbedderConfig(), dimension=HashingEmbedderConfig().dimension
)
QUIET = ImportSettings(progress=False)


@pytest.fixture(scope="module")
def exported(demo_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo build's passages as a JSONL file, their vectors by the built-in embedder
    as .npy and as a FAISS index made with the FAISS API."""
    folder = tmp_path_factory.mktemp("exported")
    version_dir = resolve_version_dir(demo_index)
    store = PassageStore(version_dir)
    try:
        passages = list(store)
    finally:
        store.close()
    with (folder / "passages.jsonl").open("w", encoding="utf-8") as f:
        for p in passages:
            record = {"id": p.id, "title": p.title, "text": p.text, "url": p.url, **p.metadata}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    embedder = create_embedder(HashingEmbedderConfig(), version_dir)
    vectors = embedder.embed_passages([p.document_text for p in passages])
    np.save(folder / "vectors.npy", vectors)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    faiss.write_index(index, str(folder / "index.faiss"))
    return folder


def top_ids(index_root: Path, queries: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
    version_dir = resolve_version_dir(index_root)
    embedder = create_embedder(HashingEmbedderConfig(), version_dir)
    retriever = FaissRetriever(version_dir, RetrieverConfig(), expected_embedder=embedder.identity)
    try:
        hits = retriever.search(embedder.embed_queries(queries), k)
    finally:
        retriever.close()
    return [[(h.passage.id, round(h.score, 5)) for h in row] for row in hits]


def questions() -> list[str]:
    lines = DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines]


def test_a_faiss_file_made_elsewhere_searches_like_the_build(
    demo_index: Path, exported: Path, tmp_path: Path
) -> None:
    root = tmp_path / "imported"
    manifest = import_index(
        exported / "passages.jsonl",
        root,
        HASHING,
        faiss_index=exported / "index.faiss",
        settings=QUIET,
    )
    built = read_manifest(resolve_version_dir(demo_index))
    assert manifest.embedder == built.embedder, "the server accepts it like the build"
    assert manifest.num_passages == built.num_passages and manifest.faiss_factory.endswith(
        "IndexFlatIP"
    )
    assert read_manifest(resolve_version_dir(root)).files.keys() == built.files.keys()
    asked = questions()
    expected = top_ids(demo_index, asked)
    assert len(expected) == len(asked) > 10 and all(len(row) == 5 for row in expected)
    assert top_ids(root, asked) == expected
    store = PassageStore(resolve_version_dir(root))
    try:
        assert store[0].metadata["source"] == "prefectures.jsonl"
    finally:
        store.close()


@pytest.mark.parametrize("form", ["npy", "npz", "npz-float16"])
def test_precomputed_vectors_search_like_the_build(
    demo_index: Path, exported: Path, tmp_path: Path, form: str
) -> None:
    vectors_file = exported / "vectors.npy"
    if form.startswith("npz"):
        matrix = np.load(vectors_file)
        dtype = np.float16 if form.endswith("float16") else np.float32
        vectors_file = tmp_path / "vectors.npz"
        np.savez(vectors_file, embeddings=matrix.astype(dtype), ids=np.arange(len(matrix)))
    root = tmp_path / "imported"
    manifest = import_index(
        exported / "passages.jsonl", root, HASHING, vectors=vectors_file, settings=QUIET
    )
    assert manifest.faiss_factory == "Flat"
    asked = questions()[:8]
    expected = top_ids(demo_index, asked)
    found = top_ids(root, asked)
    if form == "npz-float16":  # rounded vectors: the same passages, scores close
        assert [[i for i, _ in row] for row in found] == [[i for i, _ in row] for row in expected]
    else:
        assert found == expected


def rows(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8"))


def test_mismatches_are_refused_and_nothing_is_published(exported: Path, tmp_path: Path) -> None:
    passages = exported / "passages.jsonl"
    vectors: NDArray[np.float32] = np.load(exported / "vectors.npy")
    root = tmp_path / "imported"
    n, d = vectors.shape

    short = tmp_path / "short.npy"
    np.save(short, vectors[:-1])
    with pytest.raises(
        IndexImportError, match=rf"holds {n} passages but .*short\.npy holds {n - 1}"
    ):
        import_index(passages, root, HASHING, vectors=short, settings=QUIET)

    narrow = faiss.IndexFlatIP(16)
    narrow.add(np.eye(16, dtype=np.float32))
    faiss.write_index(narrow, str(tmp_path / "narrow.faiss"))
    with pytest.raises(IndexImportError, match=rf"16-dimensional vectors; .*declared with {d}"):
        import_index(passages, root, HASHING, faiss_index=tmp_path / "narrow.faiss")

    l2 = faiss.IndexFlatL2(d)
    l2.add(vectors)
    faiss.write_index(l2, str(tmp_path / "l2.faiss"))
    with pytest.raises(IndexImportError, match="does not search by inner product"):
        import_index(passages, root, HASHING, faiss_index=tmp_path / "l2.faiss")

    np.save(tmp_path / "scaled.npy", vectors * 3)
    with pytest.raises(IndexImportError, match="vector 0 has length 3"):
        import_index(passages, root, HASHING, vectors=tmp_path / "scaled.npy")

    mapped = faiss.IndexIDMap(faiss.IndexFlatIP(d))
    mapped.add_with_ids(vectors, np.arange(n, dtype=np.int64)[::-1].copy())
    faiss.write_index(mapped, str(tmp_path / "mapped.faiss"))
    with pytest.raises(IndexImportError, match="ids other than their row numbers"):
        import_index(passages, root, HASHING, faiss_index=tmp_path / "mapped.faiss")

    np.savez(tmp_path / "two.npz", a=vectors, b=vectors)
    with pytest.raises(IndexImportError, match="holds arrays a, b"):
        import_index(passages, root, HASHING, vectors=tmp_path / "two.npz")

    assert rows(passages) == n
    assert list_versions(root) == [] and not list(root.glob(".building-*"))


def test_a_sentence_transformers_embedder_is_declared_not_loaded(tmp_path: Path) -> None:
    texts = ["香川県の県庁所在地は高松市である。", "沖縄県の県庁所在地は那覇市である。"]
    passages = tmp_path / "passages.jsonl"
    passages.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "text": t}, ensure_ascii=False) + "\n"
            for i, t in enumerate(texts)
        ),
        encoding="utf-8",
    )
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(tmp_path / "vectors.npy", vectors)
    config = SentenceTransformersEmbedderConfig(
        backend="sentence-transformers", model="cl-nagoya/ruri-v3-310m", prefix_preset="ruri-v3"
    )
    without_limit = DeclaredEmbedder(config=config, dimension=32)
    with pytest.raises(IndexImportError, match="--max-seq-length"):
        import_index(passages, tmp_path / "idx", without_limit, vectors=tmp_path / "vectors.npy")
    declared = DeclaredEmbedder(config=config, dimension=32, max_seq_length=8192)
    manifest = import_index(
        passages, tmp_path / "idx", declared, vectors=tmp_path / "vectors.npy", settings=QUIET
    )
    serving = sentence_transformers_identity(config, 32, 8192)
    check_embedder(manifest, serving, tmp_path / "idx")  # what the loaded engine reports
    assert manifest.embedder.settings["query_prefix"] == "検索クエリ: "
    other = sentence_transformers_identity(config, 32, 512)
    with pytest.raises(Exception, match="max_seq_length"):
        check_embedder(manifest, other, tmp_path / "idx")


def test_cli_import(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "imported"
    dimension = str(HashingEmbedderConfig().dimension)
    argv = ["index", "import", str(exported / "passages.jsonl"), "--out", str(out), "--quiet"]
    assert main([*argv, "--faiss", str(exported / "index.faiss"), "--dimension", dimension]) == 0
    assert "passages, embedder char-ngram-bm25-signed" in capsys.readouterr().out
    assert main([*argv, "--vectors", str(exported / "vectors.npy"), "--dimension", "64"]) == 2
    assert "declared with 64" in capsys.readouterr().err
    assert main([*argv, "--vectors", "x.npy", "--dimension", "64", "--query-prefix", "q"]) == 2
    assert "--query-prefix needs --model" in capsys.readouterr().err
    assert len(list_versions(out)) == 1
