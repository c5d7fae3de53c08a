"""The built-in reranker: BM25 over character bigrams and trigrams."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from deployments.lexical.ngrams import bucket_counts, codepoints, hashed_ngrams
from deployments.lexical.stats import STATS_BUCKETS, LexicalStats
from deployments.reranker.config import LexicalRerankerConfig

_ORDERS = (2, 3)
_K1 = 1.2
_B = 0.75


class LexicalReranker:
    """Scores documents by BM25 of the query's character n-grams."""

    def __init__(self, config: LexicalRerankerConfig, stats: LexicalStats) -> None:
        self.config = config
        self.stats = stats

    @property
    def model_name(self) -> str:
        return "lexical-bm25"

    def score(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]:
        query_points = codepoints(query)
        out = np.zeros(len(documents), dtype=np.float32)
        doc_points = [codepoints(d) for d in documents]
        for order in _ORDERS:
            q_ids, _ = bucket_counts(hashed_ngrams(query_points, order), STATS_BUCKETS)
            if len(q_ids) == 0:
                continue
            idf = self.stats.idf(order, q_ids)
            for i, points in enumerate(doc_points):
                d_ids, tf = bucket_counts(hashed_ngrams(points, order), STATS_BUCKETS)
                common, q_pos, d_pos = np.intersect1d(q_ids, d_ids, return_indices=True)
                if len(common) == 0:
                    continue
                tf_f = tf[d_pos].astype(np.float32)
                norm = _K1 * (1 - _B + _B * len(points) / max(self.stats.average_length, 1.0))
                out[i] += float(np.sum(idf[q_pos] * tf_f * (_K1 + 1) / (tf_f + norm)))
        return out

    def relevance(self, raw_scores: NDArray[np.float32]) -> NDArray[np.float32]:
        relevance: NDArray[np.float32] = (1.0 - np.exp(-raw_scores / 20.0)).astype(np.float32)
        return relevance
