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


def cleaned(text: str) -> str:
    """The text n-grams are taken from: normalised, spaces dropped."""
    return normalize(text).replace(" ", "")


def codepoints(text: str) -> NDArray[np.uint64]:
    """Code points of the cleaned text."""
    return np.frombuffer(cleaned(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


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


def distinct_ngrams(
    points: NDArray[np.uint64], n: int
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """The distinct n-gram hashes of ``points`` (sorted) and how often each occurs."""
    unique, counts = np.unique(hashed_ngrams(points, n), return_counts=True)
    return unique, counts.astype(np.int64)


def signed_slots(
    hashes: NDArray[np.uint64], size: int
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Position in a vector of ``size`` and a sign of +1 or -1 for each n-gram hash.

    Both come from bits above those that pick a statistics bucket (the low 22), so
    n-grams that share a position are no likelier than chance to share a sign:
    collisions add zero-mean noise to inner products instead of a positive bias.
    """
    signs = np.where((hashes >> np.uint64(23)) & np.uint64(1), 1.0, -1.0).astype(np.float32)
    positions = ((hashes >> np.uint64(24)) % np.uint64(size)).astype(np.int64)
    return positions, signs
