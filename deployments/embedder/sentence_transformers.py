"""Embedder engine over a sentence-transformers model (ruri, multilingual-e5, ...)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deployments.embedder.config import SentenceTransformersEmbedderConfig
from deployments.extras import check_japanese_tokenizer, require
from deployments.index.format import EmbedderIdentity
from deployments.torch_runtime import resolve_device, torch_dtype

logger = logging.getLogger(__name__)


class SentenceTransformerEmbedder:
    """Queries and passages get their model family's prefixes, then ``encode``.

    One engine call embeds at most ``max_batch_size`` texts per forward pass.
    """

    def __init__(self, config: SentenceTransformersEmbedderConfig) -> None:
        purpose = f"the sentence-transformers embedder ({config.model})"
        st = require("sentence_transformers", "models", purpose)
        check_japanese_tokenizer(config.model, config.revision)
        self.config = config
        self.device = resolve_device(config.device, purpose)
        self.model: Any = st.SentenceTransformer(
            config.model,
            device=self.device,
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
            model_kwargs={"dtype": torch_dtype(config.dtype, self.device)},
        )
        if config.max_seq_length is not None:
            self.model.max_seq_length = config.max_seq_length
        self.model.eval()
        dimension = _embedding_dimension(self.model)
        if not dimension:
            raise ValueError(f"{config.model} does not report its embedding dimension")
        self._dimension = int(dimension)
        self.query_prefix, self.passage_prefix = config.prefixes
        logger.info(
            "loaded %s on %s: %d dims, max_seq_length %s",
            config.model,
            self.device,
            self._dimension,
            self.model.max_seq_length,
        )

    @property
    def identity(self) -> EmbedderIdentity:
        return sentence_transformers_identity(
            self.config, self._dimension, self.model.max_seq_length
        )

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode([self.query_prefix + t for t in texts])

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode([self.passage_prefix + t for t in texts])

    def _encode(self, texts: list[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.config.max_batch_size,
            normalize_embeddings=self.config.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def sentence_transformers_identity(
    config: SentenceTransformersEmbedderConfig, dimension: int, max_seq_length: int
) -> EmbedderIdentity:
    """The identity of ``config``'s model, which makes ``dimension``-long vectors of texts
    cut at ``max_seq_length`` tokens: computable without loading the model (an index
    imported with vectors made elsewhere declares them)."""
    query_prefix, passage_prefix = config.prefixes
    return EmbedderIdentity(
        backend="sentence-transformers",
        model=config.model,
        dimension=dimension,
        settings={
            "revision": config.revision,
            "query_prefix": query_prefix,
            "passage_prefix": passage_prefix,
            "normalize": config.normalize,
            "max_seq_length": max_seq_length,
        },
    )


def _embedding_dimension(model: Any) -> int | None:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension.
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dimension = get()
    return None if dimension is None else int(dimension)
