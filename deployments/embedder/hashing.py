"""The built-in embedder: hashed character n-grams whose inner products are BM25 scores."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from deployments.embedder.config import HashingEmbedderConfig
from deployments.index.format import EmbedderIdentity
from deployments.lexical.bm25 import saturated_tf
from deployments.lexical.ngrams import codepoints, distinct_ngrams, signed_slots
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.stats import LexicalStats


class HashingEmbedder:
    """BM25 folded into a fixed dense dimension.

    Every distinct n-gram adds ``sign * sqrt(weight * idf)`` to one hashed component of
    a query vector, and ``sign * sqrt(weight * idf) * saturated_tf`` to a passage
    vector, so the inner product of the two is the weighted BM25 score of the passage
    (up to collisions, which signed hashing makes zero-mean). Queries are scaled to unit
    length, leaving out question phrases (see ``deployments.lexical.question_phrases``).
    Passages are all divided by one corpus-wide norm (``norm_cap`` times the
    norm expected at the average passage length; a passage above it is divided by its
    own norm) and the last component tops them up to unit length; queries leave it at
    zero, so it changes no score.
    """

    def __init__(
        self,
        config: HashingEmbedderConfig,
        stats: LexicalStats,
        question_phrases: QuestionPhrases | None = None,
    ) -> None:
        """``question_phrases`` default to the packaged ones where the config ignores them."""
        missing = set(config.ngram_orders) - set(stats.document_frequency)
        if missing:
            raise ValueError(f"the index has no statistics for n-gram orders {sorted(missing)}")
        self.config = config
        self.stats = stats
        self.question_phrases = (
            (question_phrases if question_phrases is not None else QuestionPhrases.load())
            if config.ignore_question_phrases
            else None
        )
        self.passage_norm = max(config.norm_cap * self.expected_norm(stats.average_length), 1e-6)

    @property
    def identity(self) -> EmbedderIdentity:
        c = self.config
        return EmbedderIdentity(
            backend="hashing",
            model="char-ngram-bm25-signed",
            dimension=c.dimension,
            settings={
                "ngram_orders": list(c.ngram_orders),
                "order_weights": list(c.order_weights),
                "k1": c.k1,
                "b": c.b,
                "norm_cap": c.norm_cap,
                "question_phrases": (
                    self.question_phrases.fingerprint() if self.question_phrases else None
                ),
            },
        )

    def expected_norm(self, length: float) -> float:
        """Norm of the vector of a passage of ``length`` characters with no repeated
        n-gram and corpus-average IDFs, before scaling."""
        c = self.config
        ratio = length / max(self.stats.average_length, 1.0)
        saturation = float(saturated_tf(np.ones(1, dtype=np.int64), ratio, c.k1, c.b)[0])
        squared = sum(
            weight * max(length - order + 1, 0.0) * self.stats.mean_document_idf(order)
            for order, weight in zip(c.ngram_orders, c.order_weights, strict=True)
        )
        return math.sqrt(squared) * saturation

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.config.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            self._fill(out[row], text, passage=False)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.config.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            self._fill(out[row], text, passage=True)
        norms = np.linalg.norm(out, axis=1)
        out /= np.maximum(norms, self.passage_norm)[:, None]
        scaled = np.minimum(norms / self.passage_norm, 1.0)
        out[:, -1] = np.sqrt(1.0 - scaled**2)
        return out

    def _fill(self, row: NDArray[np.float32], text: str, passage: bool) -> None:
        """Add the unscaled weights of ``text`` to ``row`` (all but its last component)."""
        c = self.config
        points = codepoints(text)
        length_ratio = len(points) / max(self.stats.average_length, 1.0)
        for order, weight in zip(c.ngram_orders, c.order_weights, strict=True):
            hashes, tf = distinct_ngrams(points, order)
            if not passage and self.question_phrases is not None:
                topical = ~self.question_phrases.contains(order, hashes)
                hashes, tf = hashes[topical], tf[topical]
            if len(hashes) == 0:
                continue
            values = np.sqrt(weight * self.stats.idf_of(order, hashes))
            if passage:
                values *= saturated_tf(tf, length_ratio, c.k1, c.b)
            positions, signs = signed_slots(hashes, c.dimension - 1)
            np.add.at(row, positions, signs * values)
