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
from deployments.index.format import EmbedderIdentity
from deployments.lexical.stats import LexicalStats


def create_embedder(config: EmbedderConfig, index_dir: Path) -> EmbedderEngine:
    """The engine for ``config``; ``index_dir`` supplies corpus statistics where needed."""
    if isinstance(config, HashingEmbedderConfig):
        return HashingEmbedder(config, LexicalStats.load(index_dir))
    if isinstance(config, SentenceTransformersEmbedderConfig):
        return SentenceTransformerEmbedder(config)
    raise TypeError(f"unsupported embedder config {type(config).__name__}")


def score_free_components(identity: EmbedderIdentity) -> list[int]:
    """Components every query vector of this embedder leaves at zero, so that no score
    depends on them: the built-in embedder's last one, which tops passages up to unit
    length. An IVF index clusters without them (they would dominate its centroids)."""
    return [identity.dimension - 1] if identity.backend == "hashing" else []
