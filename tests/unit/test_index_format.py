from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.hashing import HashingEmbedder
from deployments.index.format import (
    FAISS_FILE,
    InvalidIndexError,
    check_embedder,
    list_versions,
    read_manifest,
    resolve_version_dir,
    set_current,
)
from deployments.index.passages import PassageStore
from deployments.lexical.stats import LexicalStats
from serve.indexing.build import BuildSettings, build_index


def test_manifest_describes_the_build(tiny_index: Path, tiny_corpus: Path) -> None:
    version_dir = resolve_version_dir(tiny_index)
    manifest = read_manifest(version_dir)
    assert manifest.format_version == 1
    assert manifest.num_passages == 3 and manifest.num_documents == 3
    assert manifest.faiss_factory == "Flat"
    assert manifest.embedder.backend == "hashing"
    assert manifest.embedder.dimension == HashingEmbedderConfig().dimension
    assert manifest.sources == [str(tiny_corpus)]
    assert set(manifest.files) == {
        "index.faiss",
        "passages.jsonl",
        "passages.offsets.npy",
        "lexical_stats.npz",
    }
    assert version_dir.name == manifest.version
    assert list_versions(tiny_index) == [manifest.version]


def test_passage_store_reads_back_every_passage(tiny_index: Path) -> None:
    store = PassageStore(resolve_version_dir(tiny_index))
    try:
        assert len(store) == 3
        assert [p.id for p in store] == ["hokkaido", "okinawa", "kyoto"]
        assert store[0].url == "https://example.org/hokkaido" and store[1].url is None
        assert store[2].document_text.startswith("京都府\n")
        with pytest.raises(IndexError):
            store[3]
    finally:
        store.close()


def test_passage_store_keeps_recent_passages_decoded(tiny_index: Path) -> None:
    store = PassageStore(resolve_version_dir(tiny_index))
    try:
        first = store[1]
        assert store[1] is first  # decoded once, then kept
        assert store[0] is not first and store[0].id == "hokkaido"
        assert [p.id for p in store] == ["hokkaido", "okinawa", "kyoto"]
        with pytest.raises(IndexError):
            store[-1]
    finally:
        store.close()


def test_a_second_build_becomes_current_and_old_versions_stay(
    tiny_index: Path, tiny_corpus: Path
) -> None:
    first = resolve_version_dir(tiny_index).name
    second = build_index(
        [tiny_corpus], tiny_index, HashingEmbedderConfig(), BuildSettings(progress=False)
    ).version
    assert resolve_version_dir(tiny_index).name == second != first
    assert list_versions(tiny_index) == sorted([first, second])
    set_current(tiny_index, first)
    assert resolve_version_dir(tiny_index).name == first
    assert resolve_version_dir(tiny_index, version=second).name == second
    with pytest.raises(InvalidIndexError, match="has no version 'nope'"):
        resolve_version_dir(tiny_index, version="nope")


def test_no_activate_publishes_without_serving(tiny_index: Path, tiny_corpus: Path) -> None:
    served = resolve_version_dir(tiny_index).name
    settings = BuildSettings(progress=False, make_current=False)
    new = build_index([tiny_corpus], tiny_index, HashingEmbedderConfig(), settings).version
    assert resolve_version_dir(tiny_index).name == served
    assert new in list_versions(tiny_index)


def test_missing_index_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(InvalidIndexError, match="jarag index build"):
        resolve_version_dir(tmp_path / "nothing")


def test_corrupt_file_fails_checksum(tiny_index: Path) -> None:
    version_dir = resolve_version_dir(tiny_index)
    faiss_file = version_dir / FAISS_FILE
    data = bytearray(faiss_file.read_bytes())
    data[-1] ^= 0xFF
    faiss_file.write_bytes(bytes(data))
    with pytest.raises(InvalidIndexError, match="does not match its checksum"):
        read_manifest(version_dir)
    read_manifest(version_dir, verify=False)  # sizes still agree: only the checksum catches it


def test_truncated_or_missing_file_is_incomplete(tiny_index: Path) -> None:
    version_dir = resolve_version_dir(tiny_index)
    (version_dir / "passages.jsonl").write_bytes(b"")
    with pytest.raises(InvalidIndexError, match="bytes, manifest says"):
        read_manifest(version_dir, verify=False)
    (version_dir / "passages.jsonl").unlink()
    with pytest.raises(InvalidIndexError, match="is missing"):
        read_manifest(version_dir, verify=False)


def test_unknown_format_version_is_refused(tiny_index: Path) -> None:
    version_dir = resolve_version_dir(tiny_index)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["format_version"] = 99
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidIndexError, match="format 99"):
        read_manifest(version_dir)


def test_index_of_another_embedder_is_refused(tiny_index: Path) -> None:
    version_dir = resolve_version_dir(tiny_index)
    manifest = read_manifest(version_dir)
    other = HashingEmbedder(
        HashingEmbedderConfig(dimension=512), LexicalStats.load(version_dir)
    ).identity
    default_dimension = HashingEmbedderConfig().dimension
    with pytest.raises(
        InvalidIndexError, match=rf"different embedder.*dimension: {default_dimension} != 512"
    ):
        check_embedder(manifest, other, version_dir)
    same = HashingEmbedder(HashingEmbedderConfig(), LexicalStats.load(version_dir)).identity
    check_embedder(manifest, same, version_dir)


def test_failed_build_leaves_served_version_and_no_debris(
    tiny_index: Path, tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = resolve_version_dir(tiny_index).name

    def explode(self: HashingEmbedder, texts: list[str]) -> np.ndarray:
        raise RuntimeError("embedding failed half-way")

    monkeypatch.setattr(HashingEmbedder, "embed_passages", explode)
    with pytest.raises(RuntimeError, match="half-way"):
        build_index(
            [tiny_corpus], tiny_index, HashingEmbedderConfig(), BuildSettings(progress=False)
        )
    assert resolve_version_dir(tiny_index).name == served
    assert list_versions(tiny_index) == [served]
    assert not list(tiny_index.glob(".building-*"))


def test_empty_or_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_index([tmp_path / "absent.jsonl"], tmp_path / "idx", HashingEmbedderConfig())
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no passages"):
        build_index(
            [empty], tmp_path / "idx", HashingEmbedderConfig(), BuildSettings(progress=False)
        )
    assert not (tmp_path / "idx" / "current").exists()
