"""The built-in embedder: hashed character n-grams with BM25 weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.protocol import EmbedderIdentity
from deployments.lexical.ngrams import bucket_counts, codepoints, hashed_ngrams
from deployments.lexical.stats import STATS_BUCKETS, LexicalStats


class HashingEmbedder:
    """Sparse BM25 term weights folded into a fixed dense dimension.

    A query gets the IDF of each distinct n-gram it contains; a passage gets
    BM25's saturated term frequency times IDF. Both are L2-normalised, so the
    inner product of a query and a passage is a length-normalised BM25 score.
    """

    def __init__(self, config: HashingEmbedderConfig, stats: LexicalStats) -> None:
        if len(config.order_weights) != len(config.ngram_orders):
            raise ValueError("order_weights needs one weight per entry of ngram_orders")
        missing = set(config.ngram_orders) - set(stats.document_frequency)
        if missing:
            raise ValueError(f"the index has no statistics for n-gram orders {sorted(missing)}")
        self.config = config
        self.stats = stats

    @property
    def identity(self) -> EmbedderIdentity:
        c = self.config
        return EmbedderIdentity(
            backend="hashing",
            model="char-ngram-bm25",
            dimension=c.dimension,
            settings={
                "ngram_orders": list(c.ngram_orders),
                "order_weights": list(c.order_weights),
                "k1": c.k1,
                "b": c.b,
            },
        )

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._embed(texts, passage=False)

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._embed(texts, passage=True)

    def _embed(self, texts: Sequence[str], passage: bool) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.config.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            self._fill(out[row], text, passage)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _fill(self, row: NDArray[np.float32], text: str, passage: bool) -> None:
        c = self.config
        points = codepoints(text)
        length_ratio = len(points) / max(self.stats.average_length, 1.0)
        for order, weight in zip(c.ngram_orders, c.order_weights, strict=True):
            hashes = hashed_ngrams(points, order)
            if len(hashes) == 0:
                continue
            stat_ids, tf = bucket_counts(hashes, STATS_BUCKETS)
            idf = self.stats.idf(order, stat_ids)
            if passage:
                tf_f = tf.astype(np.float32)
                saturation = tf_f * (c.k1 + 1) / (tf_f + c.k1 * (1 - c.b + c.b * length_ratio))
                values = weight * idf * saturation
            else:
                values = weight * idf
            dims = (stat_ids % c.dimension).astype(np.int64)
            np.add.at(row, dims, values.astype(np.float32))
