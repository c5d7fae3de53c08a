"""A Ray Data build killed part-way resumes from the shards it wrote (the shards run
in-process here through the same shard function the Ray actors call)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest
from numpy.typing import NDArray

from deployments.embedder.config import EmbedderConfig, HashingEmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.index.format import FAISS_FILE, EmbedderIdentity, resolve_version_dir
from deployments.index.passages import PassageStore
from serve.demo import DEMO_CORPUS
from serve.indexing import ray_build
from serve.indexing.build import BuildSettings, build_index
from serve.indexing.ray_build import RayEmbedding, Shard, embed_shard


class Killed(Exception):
    pass


class LocalShards:
    """Embeds shards in this process; raises after ``stop_after`` shards when set."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.embedded: list[Shard] = []

    def identity(self, config: EmbedderConfig, version_dir: Path) -> EmbedderIdentity:
        return create_embedder(config, version_dir).identity

    def run(
        self,
        pending: Sequence[Shard],
        config: EmbedderConfig,
        version_dir: Path,
        shards: Path,
        batch_size: int,
    ) -> Iterator[Shard]:
        engine = create_embedder(config, version_dir)
        store = PassageStore(version_dir)
        try:
            for shard in pending:
                if self.stop_after is not None and len(self.embedded) == self.stop_after:
                    raise Killed(f"stopped after {self.stop_after} shards")
                embed_shard(engine, store, shards, shard, batch_size)
                self.embedded.append(shard)
                yield shard
        finally:
            store.close()


def _contents(root: Path) -> tuple[NDArray[np.float32], list[tuple[str, str]]]:
    version_dir = resolve_version_dir(root)
    index = faiss.read_index(str(version_dir / FAISS_FILE))
    store = PassageStore(version_dir)
    try:
        passages = [(p.id, p.document_text) for p in store]
    finally:
        store.close()
    return index.reconstruct_n(0, index.ntotal), passages


def test_a_killed_build_resumes_from_its_shards_and_equals_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = BuildSettings(
        progress=False, batch_size=16, ray=RayEmbedding(shard_rows=40)
    )  # 188 passages: 5 shards
    config = HashingEmbedderConfig()
    runners = [LocalShards(stop_after=3), LocalShards(), LocalShards()]
    monkeypatch.setattr(ray_build, "shard_runner", lambda _settings: runners.pop(0))
    killed, resumed = runners[0], runners[1]

    with pytest.raises(Killed):
        build_index([DEMO_CORPUS], tmp_path / "resumed", config, settings)
    left = list((tmp_path / "resumed").glob(f"{ray_build.SHARDS_PREFIX}*/*.npy"))
    assert len(left) == 3 and len(killed.embedded) == 3

    manifest = build_index([DEMO_CORPUS], tmp_path / "resumed", config, settings)
    assert resumed.embedded == [(120, 160), (160, 188)]  # only the missing shards
    assert manifest.num_passages == 188
    assert not list((tmp_path / "resumed").glob(f"{ray_build.SHARDS_PREFIX}*"))

    build_index([DEMO_CORPUS], tmp_path / "whole", config, settings)
    vectors, passages = _contents(tmp_path / "resumed")
    whole_vectors, whole_passages = _contents(tmp_path / "whole")
    np.testing.assert_array_equal(vectors, whole_vectors)
    assert passages == whole_passages
    local = create_embedder(config, resolve_version_dir(tmp_path / "whole"))
    np.testing.assert_allclose(
        vectors, local.embed_passages([text for _, text in passages]), atol=1e-6
    )


def test_shards_of_another_embedder_are_not_reused(tmp_path: Path) -> None:
    version_dir = tmp_path / "v"
    version_dir.mkdir()
    (version_dir / "passages.jsonl").write_text("{}\n", encoding="utf-8")
    first = ray_build.shards_dir(version_dir, HashingEmbedderConfig(), 40)
    assert first == ray_build.shards_dir(version_dir, HashingEmbedderConfig(), 40)
    assert first != ray_build.shards_dir(version_dir, HashingEmbedderConfig(dimension=64), 40)
    assert first != ray_build.shards_dir(version_dir, HashingEmbedderConfig(), 50)
    (version_dir / "passages.jsonl").write_text("{}\n{}\n", encoding="utf-8")
    assert first != ray_build.shards_dir(version_dir, HashingEmbedderConfig(), 40)
