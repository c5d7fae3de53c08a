"""Builds the configured reranker engine."""

from __future__ import annotations

from pathlib import Path

from deployments.lexical.stats import LexicalStats
from deployments.reranker.config import (
    CrossEncoderRerankerConfig,
    LexicalRerankerConfig,
    RerankerConfig,
)
from deployments.reranker.cross_encoder import CrossEncoderReranker
from deployments.reranker.lexical import LexicalReranker
from deployments.reranker.protocol import RerankerEngine


def create_reranker(config: RerankerConfig, index_dir: Path) -> RerankerEngine:
    """The engine for ``config``; ``index_dir`` supplies corpus statistics where needed."""
    if isinstance(config, LexicalRerankerConfig):
        return LexicalReranker(config, LexicalStats.load(index_dir))
    if isinstance(config, CrossEncoderRerankerConfig):
        return CrossEncoderReranker(config)
    raise TypeError(f"unsupported reranker config {type(config).__name__}")
