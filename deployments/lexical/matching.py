"""Where the substrings of one query occur in a batch of documents.

All documents are laid end to end, separated by gaps of a code point no text
contains, so that one pass of NumPy operations serves the whole batch. For every
query position ``i`` and text position ``j``, ``runs[i, j]`` is the length of the
longest common substring ending at both; a query substring of length ``n`` ending
at ``i`` occurs in a document ending at ``j`` exactly when ``runs[i, j] >= n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

_GAP_POINT = np.uint64(0x110000)
"""One past the largest Unicode code point: never equal to a character."""


@dataclass(frozen=True)
class QueryMatches:
    """Common substrings of one query with each document of a batch."""

    runs: NDArray[np.int16]
    """(query length, text length): length of the common substring ending at both."""
    bounds: NDArray[np.int64]
    """Start and end column of each document, interleaved: start0, end0, start1, ..."""
    lengths: NDArray[np.int64]
    """Characters in each document."""

    @classmethod
    def find(
        cls,
        query: NDArray[np.uint64],
        documents: Sequence[NDArray[np.uint32] | NDArray[np.uint64]],
        gap: int,
    ) -> QueryMatches:
        """Match ``query`` against ``documents`` (code points), laid out ``gap`` columns
        apart (the widest window later asked for, so that no window spans two documents)."""
        lengths = np.array([len(d) for d in documents], dtype=np.int64)
        starts = np.cumsum(lengths + gap) - lengths
        text = np.full(int(lengths.sum()) + gap * (len(documents) + 1), _GAP_POINT)
        for start, document in zip(starts, documents, strict=True):
            text[start : start + len(document)] = document
        equal = query[:, None] == text[None, :]
        runs = equal.astype(np.int16)
        for i in range(1, len(query)):
            runs[i, 1:] *= runs[i - 1, :-1] + 1
        bounds = np.empty(2 * len(documents), dtype=np.int64)
        bounds[0::2] = starts
        bounds[1::2] = starts + lengths
        return cls(runs, bounds, lengths)

    def occurrences(self, ends: NDArray[np.int64], sizes: NDArray[np.int64]) -> NDArray[np.bool_]:
        """(terms, text length): where the query substring of length ``sizes[t]`` ending
        at query position ``ends[t]`` ends in the text."""
        return self.runs[ends] >= sizes[:, None].astype(np.int16)

    def count(
        self, hits: NDArray[np.bool_], prefixes: NDArray[np.int64] | None = None
    ) -> NDArray[np.int64]:
        """(terms, documents): occurrences of each term in each document, or only in its
        first ``prefixes[d]`` characters (an occurrence is where it ends)."""
        starts = self.bounds[0::2]
        ends = (
            self.bounds[1::2] if prefixes is None else starts + np.minimum(prefixes, self.lengths)
        )
        bounds = np.empty_like(self.bounds)
        bounds[0::2] = starts
        bounds[1::2] = ends
        counts = np.add.reduceat(hits, bounds, axis=1, dtype=np.int64)[:, 0::2]
        counts[:, ends == starts] = 0
        return counts

    def best_window(
        self, hits: NDArray[np.bool_], weights: NDArray[np.float32], width: int
    ) -> NDArray[np.float32]:
        """(documents,): the most weight of distinct terms found together within ``width``
        consecutive characters of each document.

        Only windows that end at an occurrence can be best, so only the columns with
        one are looked at.
        """
        best = np.zeros(len(self.lengths), dtype=np.float32)
        columns = np.flatnonzero(hits.any(axis=0))
        if len(columns) == 0:
            return best
        seen = np.cumsum(hits[:, columns], axis=1, dtype=np.int32)
        first = np.searchsorted(columns, columns - width, side="right")
        before = np.where(first > 0, seen[:, np.maximum(first - 1, 0)], 0)
        found = weights @ (seen > before).astype(np.float32)
        document = np.searchsorted(self.bounds[0::2], columns, side="right") - 1
        np.maximum.at(best, document, found)
        return best
