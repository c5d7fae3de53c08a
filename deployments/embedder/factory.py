"""Builds the configured embedder engine."""

from __future__ import annotations

from pathlib import Path

from deployments.embedder.config import (
    EmbedderConfig,
    HashingEmbedderConfig,
    SentenceTransformersEmbedderConfig,
)
from deployments.embedder.hashing import HashingEmbedder
from deployments.embedder.protocol import EmbedderEngine
from deployments.embedder.sentence_transformers import SentenceTransformerEmbedder
from deployments.lexical.stats import LexicalStats


def create_embedder(config: EmbedderConfig, index_dir: Path) -> EmbedderEngine:
    """The engine for ``config``; ``index_dir`` supplies corpus statistics where needed."""
    if isinstance(config, HashingEmbedderConfig):
        return HashingEmbedder(config, LexicalStats.load(index_dir))
    if isinstance(config, SentenceTransformersEmbedderConfig):
        return SentenceTransformerEmbedder(config)
    raise TypeError(f"unsupported embedder config {type(config).__name__}")
