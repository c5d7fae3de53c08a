"""Embedding a corpus over a Ray cluster with Ray Data, for Wikipedia-scale indexes.

An actor pool (``map_batches`` with a callable class) holds one embedder engine per
actor for its whole life, each with its own CPU and fractional GPU share, and
embeds passage rows read from the version being built. It is the very engine class
the Embedder deployment serves with, so vectors are the same as a local build's.
The version directory must be on storage every node can read (a shared volume).

A build resumes: the actors write the vectors in shard files of ``shard_rows`` passages
under ``<index root>/.shards-<key>``, where the key hashes the passages written and the
embedder config. A build that stops part-way (killed, a node lost) leaves the shards
it finished; the next build of the same corpus with the same embedder embeds only the
missing ones. The shards are removed once the version is published.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from tqdm import tqdm

from deployments.config import StrictConfig
from deployments.embedder.config import EmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.index.format import EmbedderIdentity
from deployments.index.passages import PassageStore

SHARDS_PREFIX = ".shards-"
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
    shard_rows: int = Field(
        50_000,
        ge=1,
        description="Passages per shard file: a build killed part-way resumes from the "
        "shards already written.",
    )


Shard = tuple[int, int]
"""Passage rows [start, end) embedded into one file."""


def shard_path(shards: Path, shard: Shard) -> Path:
    return shards / f"{shard[0]:012d}-{shard[1]:012d}.npy"


def embed_shard(
    engine: Any, store: PassageStore, shards: Path, shard: Shard, batch_size: int
) -> None:
    """Embed the rows of ``shard`` and write them, complete or not at all (renamed into
    place once written)."""
    start, end = shard
    parts = []
    for first in range(start, end, batch_size):
        rows = range(first, min(first + batch_size, end))
        parts.append(engine.embed_passages([store[row].document_text for row in rows]))
    target = shard_path(shards, shard)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    with open(partial, "wb") as f:
        np.save(f, np.concatenate(parts).astype(np.float32, copy=False))
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, target)


class ShardEmbedder:
    """A Ray Data actor: embeds whole shards with its own engine and writes each to the
    shards folder (shared storage), returning the shards it finished."""

    def __init__(
        self, config: EmbedderConfig, version_dir: str, shards: str, batch_size: int
    ) -> None:
        self.engine = create_embedder(config, Path(version_dir))
        self.store = PassageStore(Path(version_dir))
        self.shards = Path(shards)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        for start, end in zip(batch["start"], batch["end"], strict=True):
            embed_shard(
                self.engine, self.store, self.shards, (int(start), int(end)), self.batch_size
            )
        return {"start": batch["start"], "end": batch["end"]}


class ShardRunner(Protocol):
    """Where the shards are embedded: the Ray cluster, or in-process in tests."""

    def identity(self, config: EmbedderConfig, version_dir: Path) -> EmbedderIdentity: ...

    def run(
        self,
        pending: Sequence[Shard],
        config: EmbedderConfig,
        version_dir: Path,
        shards: Path,
        batch_size: int,
    ) -> Iterator[Shard]:
        """Embeds every pending shard, yielding each once written."""
        ...


class RayShardRunner:
    """Shards embedded by an actor pool of ``map_batches`` (one shard per batch)."""

    def __init__(self, settings: RayEmbedding) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=settings.address, log_to_driver=False)
        self.settings = settings
        self.resources = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}

    def identity(self, config: EmbedderConfig, version_dir: Path) -> EmbedderIdentity:
        import ray

        describe = ray.remote(**self.resources)(_identity)
        return EmbedderIdentity.model_validate(ray.get(describe.remote(config, str(version_dir))))

    def run(
        self,
        pending: Sequence[Shard],
        config: EmbedderConfig,
        version_dir: Path,
        shards: Path,
        batch_size: int,
    ) -> Iterator[Shard]:
        import ray

        if not pending:
            return
        items = [{"start": start, "end": end} for start, end in pending]
        # One block per shard, so that every actor of the pool gets shards to embed.
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardEmbedder,
            fn_constructor_args=(config, str(version_dir), str(shards), batch_size),
            batch_size=1,
            batch_format="numpy",
            concurrency=min(self.settings.actors, len(items)),
            **self.resources,
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for start, end in zip(batch["start"], batch["end"], strict=True):
                yield int(start), int(end)


def shard_runner(settings: RayEmbedding) -> ShardRunner:
    """The runner a build uses (tests replace it to stop a build part-way)."""
    return RayShardRunner(settings)


def shards_dir(version_dir: Path, config: EmbedderConfig, shard_rows: int) -> Path:
    """The shards folder of this corpus and embedder, beside the version being built:
    keyed by the SHA-256 of the passages written so far, the embedder config and the
    shard size."""
    digest = hashlib.sha256()
    digest.update(config.model_dump_json().encode("utf-8"))
    digest.update(str(shard_rows).encode("ascii"))
    for file in sorted(p for p in version_dir.iterdir() if p.is_file()):
        digest.update(file.name.encode("utf-8"))
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return version_dir.parent / f"{SHARDS_PREFIX}{digest.hexdigest()[:16]}"


def embed_with_ray_data(
    version_dir: Path,
    config: EmbedderConfig,
    total: int,
    batch_size: int,
    settings: RayEmbedding,
    progress: bool,
) -> tuple[EmbedderIdentity, NDArray[np.float32]]:
    """The embedder's identity and a row-aligned (memory-mapped) matrix of every vector;
    shards left by an earlier build of the same passages and embedder are reused."""
    shards = shards_dir(version_dir, config, settings.shard_rows)
    shards.mkdir(exist_ok=True)
    every = [
        (start, min(start + settings.shard_rows, total))
        for start in range(0, total, settings.shard_rows)
    ]
    pending = [shard for shard in every if not shard_path(shards, shard).is_file()]
    runner = shard_runner(settings)
    identity = runner.identity(config, version_dir)
    with tqdm(
        total=total, desc="embedding (Ray Data)", unit=" passages", disable=not progress
    ) as bar:
        bar.update(total - sum(end - start for start, end in pending))
        for start, end in runner.run(pending, config, version_dir, shards, batch_size):
            bar.update(end - start)
    matrix = np.lib.format.open_memmap(
        version_dir / VECTORS_FILE, mode="w+", dtype=np.float32, shape=(total, identity.dimension)
    )
    for shard in every:
        vectors = np.load(shard_path(shards, shard), mmap_mode="r")
        if vectors.shape != (shard[1] - shard[0], identity.dimension):
            raise ValueError(f"{shard_path(shards, shard)} holds {vectors.shape} vectors")
        matrix[shard[0] : shard[1]] = vectors
    matrix.flush()
    return identity, matrix


def discard_shards(root: Path) -> None:
    """Remove every shards folder under the index root (after a version is published)."""
    for shards in root.glob(f"{SHARDS_PREFIX}*"):
        shutil.rmtree(shards, ignore_errors=True)


def discard_vectors(version_dir: Path) -> None:
    (version_dir / VECTORS_FILE).unlink(missing_ok=True)


def _identity(config: EmbedderConfig, version_dir: str) -> dict[str, Any]:
    """Runs where an actor would, so a GPU-only model is never loaded on the driver."""
    return create_embedder(config, Path(version_dir)).identity.model_dump()
