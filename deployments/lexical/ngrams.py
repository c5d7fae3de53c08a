"""Stable hashing of character n-grams, vectorised with NumPy.

Japanese has no spaces between words, so character n-grams stand in for
terms. Each n-gram is hashed from its code points; the hash is the same in
every process and on every machine (unlike Python's ``hash``), so an index built
on one node is searched correctly on another.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from deployments.text import normalize

_MULTIPLIER = np.uint64(0x100000001B3)
_MIX_INT = 0x9E3779B97F4A7C15
_MIX = np.uint64(_MIX_INT)
_MASK = (1 << 64) - 1


def codepoints(text: str) -> NDArray[np.uint64]:
    """Code points of the normalised text (spaces dropped)."""
    cleaned = normalize(text).replace(" ", "")
    return np.frombuffer(cleaned.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def hashed_ngrams(points: NDArray[np.uint64], n: int) -> NDArray[np.uint64]:
    """64-bit hashes of every n-gram of ``points``, in text order; salted by n."""
    count = len(points) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.full(count, np.uint64((n * _MIX_INT) & _MASK), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            h = (h ^ points[offset : offset + count]) * _MULTIPLIER
        h ^= h >> np.uint64(29)
        h *= _MIX
        h ^= h >> np.uint64(32)
    return h


def bucket_counts(
    hashes: NDArray[np.uint64], buckets: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Distinct buckets hit by ``hashes`` and how often each is hit."""
    ids = (hashes % np.uint64(buckets)).astype(np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    return unique, counts.astype(np.int64)
