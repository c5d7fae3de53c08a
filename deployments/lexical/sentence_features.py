"""Features of the sentences of a few ranked passages as answers to a question.

Used by the extractive generator, which has no corpus statistics: n-grams are
weighted by how few of the request's sentences contain them (a local IDF), so that
the words every candidate shares (the topic) count less than those that single out
the sentence with the answer. Question phrases weigh nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from deployments.lexical.ngrams import cleaned
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.words import content_word_spans
from deployments.text import split_sentences

SENTENCE_FEATURE_NAMES: tuple[str, ...] = (
    "coverage_1",  # locally weighted share of the question's characters in the sentence
    "coverage_2",  # ... of its bigrams
    "coverage_3",  # ... of its trigrams
    "word_coverage",  # length share of the question's content words in the sentence
    "inverse_rank",  # 1 / the passage's number (the reranker's order)
    "log_position",  # log(1 + the sentence's index in its passage)
    "log_length",  # log(1 + characters)
    "neighbour_coverage_2",  # best coverage_2 of the sentences right before and after
    "below_passage_best_2",  # coverage_2 minus the best coverage_2 in the same passage
    "below_best_2",  # coverage_2 minus the best coverage_2 of all sentences
    "when_and_number",  # the question asks when, and the sentence has a numeral
    "how_many_and_number",  # the question asks how many or how much, and it has a numeral
)
ASKS_WHEN = re.compile(r"いつ|何年|何月|何日|何時|何世紀|何時代|年代|時期|頃")
ASKS_HOW_MANY = re.compile(
    r"何[人個回種歳倍本冊名台頭匹点位番度枚社曲話巻か国カ国%]|いくつ|いくら|どれ(くらい|ほど|だけ)|何パーセント|何キロ|何メートル"
)
_NUMERAL = re.compile(r"[0-9〇一二三四五六七八九十百千万億]")


@dataclass(frozen=True, slots=True)
class CandidateSentence:
    passage_number: int
    """1-based number of the passage, as in its citation marker."""
    position: int
    """Index of the sentence among those of its passage."""
    text: str


def candidate_sentences(passages: Sequence[str]) -> list[CandidateSentence]:
    """The sentences of each passage, split line by line (a sentence never spans lines)."""
    out: list[CandidateSentence] = []
    for number, passage in enumerate(passages, start=1):
        position = 0
        for line in passage.split("\n"):
            for sentence in split_sentences(line):
                out.append(CandidateSentence(number, position, sentence))
                position += 1
    return out


class SentenceFeatures:
    """Computes ``SENTENCE_FEATURE_NAMES`` for every sentence of a request's passages."""

    def __init__(self, question_phrases: QuestionPhrases) -> None:
        self.question_phrases = question_phrases

    def extract(self, question: str, sentences: Sequence[CandidateSentence]) -> NDArray[np.float64]:
        """(sentences, features)."""
        out = np.zeros((len(sentences), len(SENTENCE_FEATURE_NAMES)))
        if not sentences:
            return out
        column = {name: i for i, name in enumerate(SENTENCE_FEATURE_NAMES)}
        texts = [cleaned(s.text) for s in sentences]
        asked = cleaned(question)
        for order in (1, 2, 3):
            grams = self.topical_ngrams(asked, order)
            found = [_ngrams(t, order) for t in texts]
            weights = {
                g: math.log(1 + (len(texts) + 1) / (sum(g in f for f in found) + 0.5))
                for g in grams
            }
            total = sum(weights.values())
            if total > 0:
                out[:, column[f"coverage_{order}"]] = [
                    sum(w for g, w in weights.items() if g in f) / total for f in found
                ]
        words = [asked[a:b] for a, b in content_word_spans(asked)]
        words = [w for w in words if not self._is_phrase(w)]
        word_chars = sum(len(w) for w in words)
        out[:, column["word_coverage"]] = [
            sum(len(w) for w in words if w in t) / word_chars if word_chars else 1.0 for t in texts
        ]
        numbers = np.array([bool(_NUMERAL.search(t)) for t in texts])
        out[:, column["when_and_number"]] = numbers * bool(ASKS_WHEN.search(asked))
        out[:, column["how_many_and_number"]] = numbers * bool(ASKS_HOW_MANY.search(asked))
        passage = np.array([s.passage_number for s in sentences])
        position = np.array([s.position for s in sentences])
        out[:, column["inverse_rank"]] = 1.0 / passage
        out[:, column["log_position"]] = np.log1p(position)
        out[:, column["log_length"]] = np.log1p([len(t) for t in texts])

        coverage = out[:, column["coverage_2"]]
        for i in range(len(sentences)):
            same = passage == passage[i]
            neighbours = same & (np.abs(position - position[i]) == 1)
            out[i, column["neighbour_coverage_2"]] = coverage[neighbours].max(initial=0.0)
            out[i, column["below_passage_best_2"]] = coverage[i] - coverage[same].max()
        out[:, column["below_best_2"]] = coverage - coverage.max()
        return out

    def topical_ngrams(self, text: str, order: int) -> set[str]:
        """The distinct ``order``-grams of cleaned ``text`` that are not question phrases."""
        return {g for g in _ngrams(text, order) if not self._is_phrase(g)}

    def _is_phrase(self, text: str) -> bool:
        return text in self.question_phrases


def _ngrams(text: str, order: int) -> set[str]:
    return {text[i : i + order] for i in range(len(text) - order + 1)}
