from __future__ import annotations

import numpy as np

from deployments.lexical.matching import QueryMatches
from deployments.lexical.ngrams import codepoints


def find(query: str, *documents: str, gap: int = 8) -> QueryMatches:
    return QueryMatches.find(codepoints(query), [codepoints(d) for d in documents], gap)


def test_runs_are_lengths_of_common_substrings() -> None:
    matches = find("abc", "xabc")
    start = int(matches.bounds[0])
    # "abc" ends at query position 2 and at document position 3, three characters long
    assert matches.runs[2, start + 3] == 3
    assert matches.runs[1, start + 2] == 2
    assert matches.runs[0, start + 1] == 1
    assert int(matches.runs.max()) == 3


def test_occurrences_are_counted_per_document_and_in_prefixes() -> None:
    matches = find("abc", "xabcab", "bc", "")
    ends = np.array([1, 2])  # "ab" ends at query position 1, "bc" at 2
    hits = matches.occurrences(ends, np.array([2, 2]))
    np.testing.assert_array_equal(matches.count(hits), [[2, 0, 0], [1, 1, 0]])
    # in the first three characters only ("xab", "bc", ""): "ab" once in the first
    np.testing.assert_array_equal(matches.count(hits, np.array([3, 3, 3])), [[1, 0, 0], [0, 1, 0]])


def test_runs_never_cross_document_boundaries() -> None:
    matches = find("ab", "a", "b")
    hits = matches.occurrences(np.array([1]), np.array([2]))
    np.testing.assert_array_equal(matches.count(hits), [[0, 0]])


def test_best_window_weighs_distinct_terms_found_close_together() -> None:
    matches = find("ab", "a1234b", "ab", gap=10)
    hits = matches.occurrences(np.array([0, 1]), np.array([1, 1]))
    weights = np.array([1.0, 2.0], dtype=np.float32)
    # "a" and "b" are 6 characters apart in the first document, adjacent in the second
    np.testing.assert_allclose(matches.best_window(hits, weights, 3), [2.0, 3.0])
    np.testing.assert_allclose(matches.best_window(hits, weights, 6), [3.0, 3.0])
    # repeats of a term count once
    repeated = find("a", "aaaa", gap=10)
    one = repeated.occurrences(np.array([0]), np.array([1]))
    np.testing.assert_allclose(repeated.best_window(one, np.array([1.0], np.float32), 4), [1.0])


def test_no_terms_or_no_matches_give_zeros() -> None:
    matches = find("xyz", "abc")
    none = matches.occurrences(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert matches.count(none).shape == (0, 1)
    hits = matches.occurrences(np.array([0]), np.array([1]))
    np.testing.assert_array_equal(matches.best_window(hits, np.ones(1, np.float32), 5), [0.0])
