"""Index building over the Ray cluster (Ray Data actor pool) equals a local build."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from deployments.embedder.config import HashingEmbedderConfig
from deployments.index.format import FAISS_FILE, read_manifest, resolve_version_dir
from serve.demo import DEMO_CORPUS
from serve.indexing.build import BuildSettings, build_index
from serve.indexing.ray_build import VECTORS_FILE, RayEmbedding
from tests.integration.conftest import ServeCluster

pytestmark = pytest.mark.integration


def _vectors(version_dir: Path) -> np.ndarray:
    index = faiss.read_index(str(version_dir / FAISS_FILE))
    vectors: np.ndarray = index.reconstruct_n(0, index.ntotal)
    return vectors


def test_ray_data_build_matches_local_build(
    serve_cluster: ServeCluster, demo_index: Path, tmp_path: Path
) -> None:
    pool = RayEmbedding(actors=2, num_cpus=0.5, num_gpus=0.25)  # fractional GPUs, declared
    settings = BuildSettings(progress=False, batch_size=32, ray=pool)
    manifest = build_index([DEMO_CORPUS], tmp_path / "ray", HashingEmbedderConfig(), settings)
    built, local = resolve_version_dir(tmp_path / "ray"), resolve_version_dir(demo_index)
    assert manifest.num_passages == 188
    assert manifest.embedder == read_manifest(local).embedder
    np.testing.assert_allclose(_vectors(built), _vectors(local), atol=1e-6)
    assert not (built / VECTORS_FILE).exists()
    on_disk = {p.name for p in built.iterdir()} - {"manifest.json"}
    assert set(manifest.files) == on_disk
    read_manifest(built, verify=True)
