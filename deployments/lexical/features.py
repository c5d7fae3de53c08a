"""Query-document features of the learned lexical reranker.

Each feature describes how well one document matches the query and is computed
from the pair alone (never from the other candidates or a first-stage score), so
that a document's score, and its relevance, do not depend on what it is ranked
with. Query n-grams weigh their IDF, except question phrases, which weigh 0.
A document's title is its first line, as in ``Passage.document_text``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from deployments.lexical.bm25 import saturated_tf
from deployments.lexical.matching import QueryMatches
from deployments.lexical.ngrams import cleaned, codepoints, hashed_ngrams
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.stats import LexicalStats
from deployments.lexical.words import content_word_spans

FEATURE_NAMES: tuple[str, ...] = (
    "bm25_1",  # BM25 of the query's characters
    "bm25_2",  # BM25 of the query's bigrams
    "bm25_3",  # BM25 of the query's trigrams
    "rare_coverage_2",  # share of the query bigrams' squared IDF found in the document
    "body_coverage_2",  # share of the IDF of query bigrams absent from the title found
    "rarest_found_2",  # IDF of the rarest query bigram found / IDF of the rarest one
    "window_1",  # most IDF share of query characters found within WIDE_WINDOW characters
    "narrow_window_1",  # the same within NARROW_WINDOW characters
    "word_coverage",  # length share of the query's content words found
    "word_bm25",  # BM25 of the query's content words
    "title_in_query",  # share of the title's bigrams found in the query
    "log_length",  # log(1 + characters)
)
WIDE_WINDOW = 96
NARROW_WINDOW = 32
MAX_QUERY_CHARS = 256
MAX_DOCUMENT_CHARS = 2048
"""Longer queries and documents are cut (as a cross-encoder cuts its input): the match
matrix has a row per query character and a column per document character."""
DOCUMENT_CACHE_SIZE = 2048
"""Documents whose cleaned code points and title are kept: the passages of a corpus
come back for many queries, and cleaning them is ~15% of the work."""
CACHED_DOCUMENT_CHARS = 2 * MAX_DOCUMENT_CHARS
"""Longer documents are not kept (the cache holds each document as its key), so that
the cache stays within a few tens of MB whatever clients send to /v1/rerank."""
_K1 = 1.2
_B = 0.75


@dataclass(frozen=True)
class _QueryTerms:
    """Query substrings scored as units: where each ends in the query, its length and
    its weight."""

    ends: NDArray[np.int64]
    sizes: NDArray[np.int64]
    weights: NDArray[np.float32]


class LexicalFeatures:
    """Computes ``FEATURE_NAMES`` for a query and a batch of documents."""

    def __init__(self, stats: LexicalStats, question_phrases: QuestionPhrases) -> None:
        self.stats = stats
        self.question_phrases = question_phrases

    def extract(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]:
        """(documents, features) float32, columns in the order of ``FEATURE_NAMES``."""
        out = np.zeros((len(documents), len(FEATURE_NAMES)), dtype=np.float32)
        text = cleaned(query)[:MAX_QUERY_CHARS]
        points = codepoints(text)
        if len(points) == 0 or not documents:
            return out
        views = [_document_view(d) for d in documents]
        titles = [title for _, title in views]
        matches = QueryMatches.find(points, [text for text, _ in views], WIDE_WINDOW)
        length_ratio = matches.lengths / max(self.stats.average_length, 1.0)
        feature: dict[str, NDArray[np.float32] | NDArray[np.float64]] = {}

        for order in (1, 2, 3):
            terms = self._ngram_terms(points, order)
            hits = matches.occurrences(terms.ends, terms.sizes)
            counts = matches.count(hits)
            feature[f"bm25_{order}"] = _bm25(terms.weights, counts, length_ratio)
            if order == 1:
                total = max(float(terms.weights.sum()), 1e-6)
                feature["window_1"] = matches.best_window(hits, terms.weights, WIDE_WINDOW) / total
                feature["narrow_window_1"] = (
                    matches.best_window(hits, terms.weights, NARROW_WINDOW) / total
                )
            elif order == 2:
                found = counts > 0
                squared = terms.weights**2
                feature["rare_coverage_2"] = squared @ found / max(float(squared.sum()), 1e-12)
                in_title = matches.count(hits, np.array([len(t) for t in titles])) > 0
                outside = terms.weights[:, None] * ~in_title
                feature["body_coverage_2"] = np.where(
                    outside.sum(axis=0) > 0,
                    (outside * found).sum(axis=0) / np.maximum(outside.sum(axis=0), 1e-12),
                    1.0,
                )
                feature["rarest_found_2"] = np.max(
                    found * terms.weights[:, None], axis=0, initial=0.0
                ) / max(float(terms.weights.max(initial=0.0)), 1e-6)

        words = self._word_terms(text)
        if len(words.ends):
            counts = matches.count(matches.occurrences(words.ends, words.sizes))
            lengths = words.sizes.astype(np.float32)
            feature["word_coverage"] = lengths @ (counts > 0) / float(lengths.sum())
            feature["word_bm25"] = _bm25(words.weights, counts, length_ratio)
        else:
            feature["word_coverage"] = np.ones(len(documents))
            feature["word_bm25"] = np.zeros(len(documents))
        feature["title_in_query"] = np.array([_bigram_share_in(t, text) for t in titles])
        feature["log_length"] = np.log1p(matches.lengths)

        for column, name in enumerate(FEATURE_NAMES):
            out[:, column] = feature[name]
        return out

    def _ngram_terms(self, points: NDArray[np.uint64], order: int) -> _QueryTerms:
        """The distinct n-grams of the query, at their first occurrence."""
        hashes = hashed_ngrams(points, order)
        _, first = np.unique(hashes, return_index=True)
        first = np.sort(first)
        weights = self.stats.idf_of(order, hashes[first])
        weights[self.question_phrases.contains(order, hashes[first])] = 0.0
        return _QueryTerms(first + order - 1, np.full(len(first), order, dtype=np.int64), weights)

    def _word_terms(self, text: str) -> _QueryTerms:
        """The distinct content words of the query that are not question phrases, each
        weighing the summed IDF of its bigrams."""
        ends: list[int] = []
        sizes: list[int] = []
        weights: list[float] = []
        seen: set[str] = set()
        for start, end in content_word_spans(text):
            word = text[start:end]
            if word in seen:
                continue
            seen.add(word)
            points = codepoints(word)
            if self.question_phrases.contains(len(word), hashed_ngrams(points, len(word))).any():
                continue
            ends.append(end - 1)
            sizes.append(end - start)
            weights.append(float(self.stats.idf_of(2, hashed_ngrams(points, 2)).sum()))
        return _QueryTerms(
            np.array(ends, dtype=np.int64),
            np.array(sizes, dtype=np.int64),
            np.array(weights, dtype=np.float32),
        )


def _bm25(
    weights: NDArray[np.float32], counts: NDArray[np.int64], length_ratio: NDArray[np.float64]
) -> NDArray[np.float32]:
    """(documents,): BM25 of terms weighing ``weights``, with ``counts`` (terms, documents)."""
    return np.asarray(weights @ saturated_tf(counts, length_ratio[None, :], _K1, _B))


def _document_view(document: str) -> tuple[NDArray[np.uint32], str]:
    """The code points of a document's cleaned text (cut to ``MAX_DOCUMENT_CHARS``,
    read-only) and its title; kept for documents of up to ``CACHED_DOCUMENT_CHARS``."""
    if len(document) > CACHED_DOCUMENT_CHARS:
        return _view_of(document)
    return _kept_view_of(document)


def _view_of(document: str) -> tuple[NDArray[np.uint32], str]:
    text = cleaned(document)[:MAX_DOCUMENT_CHARS]
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), _title(document)


_kept_view_of = functools.lru_cache(maxsize=DOCUMENT_CACHE_SIZE)(_view_of)


def _title(document: str) -> str:
    """The cleaned first line of a document with more than one line, else ''."""
    return cleaned(document.split("\n", 1)[0]) if "\n" in document else ""


def _bigram_share_in(title: str, query: str) -> float:
    """Share of the distinct bigrams of ``title`` found in ``query`` (a one-character
    title counts whole)."""
    if len(title) < 2:
        return float(bool(title) and title in query)
    bigrams = {title[i : i + 2] for i in range(len(title) - 1)}
    return sum(1 for b in bigrams if b in query) / len(bigrams)
