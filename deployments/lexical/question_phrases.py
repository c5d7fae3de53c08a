"""Phrases that mark a text as a question (何年, どこで, ですか, ?) rather than carry
its topic. They are rare in documents, so their IDF is high, yet a document that
contains them is no likelier to answer the question: lexical scores leave them out."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from deployments.lexical.ngrams import cleaned, codepoints, hashed_ngrams


class QuestionPhrases:
    """A set of short phrases, looked up by the hash of the n-gram they form."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases: list[str] = sorted({c for c in map(cleaned, phrases) if c})
        hashes: dict[int, list[int]] = {}
        for phrase in self.phrases:
            hashes.setdefault(len(phrase), []).append(
                int(hashed_ngrams(codepoints(phrase), len(phrase))[0])
            )
        self._hashes = {n: np.unique(np.array(h, dtype=np.uint64)) for n, h in hashes.items()}

    def contains(self, order: int, hashes: NDArray[np.uint64]) -> NDArray[np.bool_]:
        """Which of these hashes of ``order``-grams are question phrases."""
        known = self._hashes.get(order)
        if known is None:
            return np.zeros(len(hashes), dtype=bool)
        return np.isin(hashes, known)

    def __len__(self) -> int:
        return len(self.phrases)
