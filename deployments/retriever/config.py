"""Typed configuration of the retriever stage and of the index it serves."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deployments.batching import BatchingSettings
from deployments.config import StrictConfig


class IndexConfig(StrictConfig):
    """Which index the graph serves."""

    path: str = Field(
        description="Index root written by `jarag index build --out` (its current version is "
        "served), or one version directory. Relative paths are resolved against the directory "
        "`serve run` is started from."
    )
    version: str | None = Field(
        None, description="Serve this version of the root instead of its current one."
    )
    verify_checksums: bool = Field(
        True, description="Check every index file against the manifest's SHA-256 at load."
    )


class RetrieverConfig(BatchingSettings):
    """FAISS search settings."""

    top_k: int = Field(
        50,
        ge=1,
        le=1000,
        description="Candidates a chat request retrieves for the reranker unless it sets "
        "rag.top_k.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' moves the index to a GPU when faiss-gpu and a GPU are present."
    )
    search_parameters: dict[str, float] = Field(
        default_factory=dict,
        description="FAISS ParameterSpace settings applied at load, e.g. {nprobe: 32} for IVF "
        "or {efSearch: 128} for HNSW.",
    )
    threads: int | None = Field(
        None, ge=1, description="OpenMP threads for FAISS search; default: FAISS's own choice."
    )
    mmap: bool = Field(
        True,
        description="Memory-map the index file's flat vectors (Flat, HNSW, the full vectors of "
        "a re-scored IVF-PQ) instead of copying them into each replica: the replicas of a "
        "node share them through the page cache. IVF lists are always read into memory.",
    )
    blas_min_queries: int = Field(
        3,
        ge=1,
        description="Exact (Flat) distances of a call with at least this many queries are "
        "computed as one matrix product (BLAS), which reads the stored vectors once for the "
        "whole batch; fewer queries are scanned one at a time. FAISS's own rule (queries x "
        "dimension >= 128,000) scans batches of up to 15 queries at 8,192 dimensions (31 at "
        "4,096) one at a time, which makes batched search no faster than unbatched.",
    )


KNOWLEDGE_BASE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Letters, digits, '.', '_' and '-', at most 64: safe in a model id ``ja-rag/<name>``
and in a URL."""
DEFAULT_KNOWLEDGE_BASE = "default"
"""The name of the knowledge base a config with a single ``index:`` serves."""


class KnowledgeBaseConfig(IndexConfig):
    """One named index served as a knowledge base."""

    name: str = Field(
        pattern=KNOWLEDGE_BASE_NAME,
        description="Its name: the knowledge id Dify sends to /retrieval, the model id "
        "ja-rag/<name> and rag.knowledge_base on the chat endpoint.",
    )
    description: str = Field("", description="Shown in GET /v1/models.")


KnowledgeBasesInput = dict[str, str] | list[KnowledgeBaseConfig]
"""A ``name: path`` mapping, or a list of ``{name, path, description, ...}``."""


def knowledge_base_list(value: KnowledgeBasesInput) -> tuple[KnowledgeBaseConfig, ...]:
    """Either form as a list, in the order given; names must be unique and at least one
    given."""
    if isinstance(value, dict):
        bases = tuple(KnowledgeBaseConfig(name=name, path=path) for name, path in value.items())
    else:
        bases = tuple(value)
    if not bases:
        raise ValueError("knowledge_bases must name at least one knowledge base")
    names = [b.name for b in bases]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"knowledge base names must be unique; repeated: {repeated}")
    return bases
