"""Embedding a corpus over a Ray cluster with Ray Data, for Wikipedia-scale indexes.

An actor pool (``map_batches`` with a callable class) holds one embedder engine per
actor for its whole life, each with its own CPU and fractional GPU share, and
embeds passage rows read from the version being built. It is the very engine class
the Embedder deployment serves with, so vectors are the same as a local build's.
The version directory must be on storage every node can read (a shared volume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from tqdm import tqdm

from deployments.config import StrictConfig
from deployments.embedder.config import EmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.index.format import EmbedderIdentity
from deployments.index.passages import PassageStore

VECTORS_FILE = ".vectors.npy"
"""All passage vectors, row-aligned, while a version is being built (removed after)."""


class RayEmbedding(StrictConfig):
    """Where and how wide to embed with Ray Data."""

    address: str | None = Field(
        None,
        description="Ray cluster to use: 'auto', ray://host:10001, or none for RAY_ADDRESS "
        "or a new local instance.",
    )
    actors: int = Field(2, ge=1, description="Embedder actors in the pool.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved by each actor.")
    num_gpus: float = Field(
        0.0, ge=0, description="GPU share of each actor; 0.25 packs four actors on one GPU."
    )


class PassageEmbedder:
    """A Ray Data actor: embeds batches of passage rows with its own engine."""

    def __init__(self, config: EmbedderConfig, version_dir: str) -> None:
        self.engine = create_embedder(config, Path(version_dir))
        self.store = PassageStore(Path(version_dir))

    def __call__(self, batch: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        rows = batch["id"]
        texts = [self.store[int(row)].document_text for row in rows]
        return {"id": rows, "vector": self.engine.embed_passages(texts)}


def embed_with_ray_data(
    version_dir: Path,
    config: EmbedderConfig,
    total: int,
    batch_size: int,
    settings: RayEmbedding,
    progress: bool,
) -> tuple[EmbedderIdentity, NDArray[np.float32]]:
    """The embedder's identity and a row-aligned (memory-mapped) matrix of every vector."""
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.address, log_to_driver=False)
    resources = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}
    describe = ray.remote(**resources)(_identity)
    identity = EmbedderIdentity.model_validate(ray.get(describe.remote(config, str(version_dir))))
    matrix = np.lib.format.open_memmap(
        version_dir / VECTORS_FILE, mode="w+", dtype=np.float32, shape=(total, identity.dimension)
    )
    dataset = ray.data.range(total).map_batches(
        PassageEmbedder,
        fn_constructor_args=(config, str(version_dir)),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=settings.actors,
        **resources,
    )
    with tqdm(
        total=total, desc="embedding (Ray Data)", unit=" passages", disable=not progress
    ) as bar:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            matrix[batch["id"]] = batch["vector"]
            bar.update(len(batch["id"]))
    matrix.flush()
    return identity, matrix


def discard_vectors(version_dir: Path) -> None:
    (version_dir / VECTORS_FILE).unlink(missing_ok=True)


def _identity(config: EmbedderConfig, version_dir: str) -> dict[str, Any]:
    """Runs where an actor would, so a GPU-only model is never loaded on the driver."""
    return create_embedder(config, Path(version_dir)).identity.model_dump()
