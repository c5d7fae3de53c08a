"""Phrases that mark a text as a question (何年, どこで, ですか, ?) rather than carry
its topic. They are rare in documents, so their IDF is high, yet a document that
contains them is no likelier to answer the question: lexical scores leave them out.

``question_phrases.json`` next to this module is learned from JaQuAD training
questions by ``python -m serve.training.reranker``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from deployments.lexical.ngrams import cleaned, codepoints, hashed_ngrams

DEFAULT_PHRASES_FILE = Path(__file__).with_name("question_phrases.json")


class QuestionPhrases:
    """A set of short phrases, looked up by the hash of the n-gram they form."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases: tuple[str, ...] = tuple(sorted({c for c in map(cleaned, phrases) if c}))
        self._set = frozenset(self.phrases)
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

    def __contains__(self, text: object) -> bool:
        """Whether ``text``, already cleaned (see ``ngrams.cleaned``), is a question phrase."""
        return text in self._set

    def fingerprint(self) -> str:
        """Short digest of the phrases, for identities that depend on them."""
        return hashlib.sha256("\n".join(self.phrases).encode()).hexdigest()[:12]

    def __len__(self) -> int:
        return len(self.phrases)

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps({"question_phrases": list(self.phrases)}, ensure_ascii=False, indent=0)
            + "\n",
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path = DEFAULT_PHRASES_FILE) -> QuestionPhrases:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"question phrases {path} are missing: learn them with "
                "`python -m serve.training.reranker`"
            ) from error
        phrases = data.get("question_phrases") if isinstance(data, dict) else None
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            raise ValueError(f"{path}: expected {{'question_phrases': [strings]}}")
        return cls(phrases)
