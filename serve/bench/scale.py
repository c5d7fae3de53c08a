"""Cost against corpus size: synthetic corpora of growing size are indexed with the
built-in embedder at a small dimension (so that a million vectors fit in memory and
are embedded in minutes), served by the graph, and asked the demo questions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployments.embedder.config import HashingEmbedderConfig
from serve.bench.corpora import BenchIndex, build, demo_questions, write_synthetic_corpus
from serve.indexing.build import BuildSettings


@dataclass(frozen=True)
class ScaleSettings:
    sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    dimension: int = 256
    """Vector length of the built-in embedder here: 1M x 256 float32 = 1 GiB."""
    factory: str = "Flat"
    """Exact search, so that the growth of search cost with the corpus is plain to see."""
    concurrency: tuple[int, ...] = (1, 4)


def embedder_config(settings: ScaleSettings) -> HashingEmbedderConfig:
    return HashingEmbedderConfig(dimension=settings.dimension)


def build_synthetic(work: Path, size: int, settings: ScaleSettings) -> BenchIndex:
    """An index of ``size`` synthetic documents; its build time counts from the corpus
    file written to the index published."""
    corpus = write_synthetic_corpus(work / f"synthetic-{size}.jsonl", size)
    try:
        return build(
            f"synthetic {size}",
            [corpus],
            work / f"synthetic-{size}",
            embedder_config(settings),
            demo_questions(),
            BuildSettings(faiss_factory=settings.factory, progress=False),
        )
    finally:
        corpus.unlink()


def directory_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
