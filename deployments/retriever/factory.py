"""Builds the configured retriever engine."""

from __future__ import annotations

from pathlib import Path

from deployments.retriever.config import IndexConfig, RetrieverConfig
from deployments.retriever.faiss_search import FaissRetriever
from deployments.retriever.protocol import RetrieverEngine


def create_retriever(
    config: RetrieverConfig, index: IndexConfig, version_dir: Path
) -> RetrieverEngine:
    """FAISS over the index version in ``version_dir``, verified as ``index`` says."""
    return FaissRetriever(version_dir, config, verify_checksums=index.verify_checksums)
