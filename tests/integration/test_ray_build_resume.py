"""A build stopped part-way resumes over the real Ray cluster (Ray Data actor pool)
from the shards it wrote, and equals a local build."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from deployments.embedder.config import HashingEmbedderConfig
from deployments.index.format import FAISS_FILE, resolve_version_dir
from serve.demo import DEMO_CORPUS
from serve.indexing import ray_build
from serve.indexing.build import BuildSettings, build_index
from serve.indexing.ray_build import RayEmbedding
from tests.integration.conftest import ServeCluster
from tests.unit.test_build_resume import Killed, LocalShards

pytestmark = pytest.mark.integration


def test_a_stopped_build_resumes_on_ray_data(
    serve_cluster: ServeCluster, demo_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = RayEmbedding(actors=2, num_cpus=0.5, shard_rows=40)
    settings = BuildSettings(progress=False, batch_size=16, ray=pool)
    real = ray_build.shard_runner
    with monkeypatch.context() as patch:
        patch.setattr(ray_build, "shard_runner", lambda _settings: LocalShards(stop_after=2))
        with pytest.raises(Killed):
            build_index([DEMO_CORPUS], tmp_path / "ray", HashingEmbedderConfig(), settings)
    assert ray_build.shard_runner is real
    assert len(list((tmp_path / "ray").glob(f"{ray_build.SHARDS_PREFIX}*/*.npy"))) == 2

    build_index([DEMO_CORPUS], tmp_path / "ray", HashingEmbedderConfig(), settings)

    built = faiss.read_index(str(resolve_version_dir(tmp_path / "ray") / FAISS_FILE))
    local = faiss.read_index(str(resolve_version_dir(demo_index) / FAISS_FILE))
    np.testing.assert_allclose(
        built.reconstruct_n(0, built.ntotal), local.reconstruct_n(0, local.ntotal), atol=1e-6
    )
    assert not list((tmp_path / "ray").glob(f"{ray_build.SHARDS_PREFIX}*"))
