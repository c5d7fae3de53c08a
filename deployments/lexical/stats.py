"""Corpus statistics learned at index build and stored with the index."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deployments.lexical.ngrams import bucket_counts, codepoints, hashed_ngrams

LEXICAL_STATS_FILE = "lexical_stats.npz"
STATS_BUCKETS = 1 << 22
"""Document-frequency table size; at 4M buckets collisions are rare for any corpus."""
STATS_ORDERS = (1, 2, 3)


@dataclass(frozen=True)
class LexicalStats:
    """Document frequencies of hashed character n-grams, per n-gram order."""

    num_documents: int
    average_length: float
    document_frequency: dict[int, NDArray[np.int32]]
    """n-gram order -> table of ``STATS_BUCKETS`` document counts."""

    @classmethod
    def fit(cls, documents: Iterable[str]) -> LexicalStats:
        tables = {n: np.zeros(STATS_BUCKETS, dtype=np.int32) for n in STATS_ORDERS}
        total_length = 0
        count = 0
        for text in documents:
            points = codepoints(text)
            total_length += len(points)
            count += 1
            for n, table in tables.items():
                ids, _ = bucket_counts(hashed_ngrams(points, n), STATS_BUCKETS)
                table[ids] += 1
        return cls(count, total_length / max(count, 1), tables)

    def idf(self, order: int, bucket_ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """BM25's inverse document frequency, never negative."""
        df = self.document_frequency[order][bucket_ids].astype(np.float64)
        n = float(self.num_documents)
        return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)

    def idf_of(self, order: int, hashes: NDArray[np.uint64]) -> NDArray[np.float32]:
        """BM25's inverse document frequency of n-grams given by their 64-bit hashes."""
        return self.idf(order, (hashes % np.uint64(STATS_BUCKETS)).astype(np.int64))

    def mean_document_idf(self, order: int) -> float:
        """Average IDF of the distinct n-grams of a document, over the corpus."""
        df = self.document_frequency[order]
        seen = np.flatnonzero(df)
        if len(seen) == 0:
            return 0.0
        weights = df[seen].astype(np.float64)
        return float(np.sum(weights * self.idf(order, seen)) / np.sum(weights))

    def save(self, directory: Path) -> Path:
        path = directory / LEXICAL_STATS_FILE
        arrays: dict[str, Any] = {
            "num_documents": np.int64(self.num_documents),
            "average_length": np.float64(self.average_length),
            **{f"df{n}": table for n, table in self.document_frequency.items()},
        }
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, directory: Path) -> LexicalStats:
        path = directory / LEXICAL_STATS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: rebuild the index with `jarag index build`"
            )
        with np.load(path) as data:
            tables = {
                int(key[2:]): data[key].astype(np.int32)
                for key in data.files
                if key.startswith("df")
            }
            return cls(int(data["num_documents"]), float(data["average_length"]), tables)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.num_documents}:{self.average_length:.6f}".encode())
        for n in sorted(self.document_frequency):
            digest.update(self.document_frequency[n].tobytes())
        return digest.hexdigest()[:16]
