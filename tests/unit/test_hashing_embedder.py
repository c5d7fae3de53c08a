from __future__ import annotations

import math

import numpy as np
import pytest

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.hashing import HashingEmbedder
from deployments.lexical.ngrams import codepoints, hashed_ngrams, signed_slots
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.stats import LexicalStats

NO_PHRASES = QuestionPhrases([])


def embedder(stats: LexicalStats, **settings: object) -> HashingEmbedder:
    return HashingEmbedder(HashingEmbedderConfig(**settings), stats, NO_PHRASES)


def test_every_vector_has_unit_length_and_the_configured_dimension(
    stats: LexicalStats, documents: tuple[str, ...]
) -> None:
    engine = embedder(stats, dimension=1024)
    passages = engine.embed_passages(list(documents))
    queries = engine.embed_queries(["富士山の標高は？", "桜"])
    assert passages.shape == (5, 1024) and queries.shape == (2, 1024)
    assert passages.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    assert np.all(queries[:, -1] == 0), "queries leave the padding component at zero"


def test_query_vector_holds_the_signed_square_root_idf_of_each_ngram(
    stats: LexicalStats,
) -> None:
    # 富, 士 and 富士 each occur in one of the five documents: idf = ln(1 + 4.5 / 1.5) = ln 4,
    # so the three components are equal and, after scaling, 1/sqrt(3) in size.
    engine = embedder(stats, dimension=4096)
    vector = engine.embed_queries(["富士"])[0]
    expected = np.zeros(4096, dtype=np.float32)
    points = codepoints("富士")
    for order in (1, 2):
        positions, signs = signed_slots(hashed_ngrams(points, order), 4095)
        np.add.at(expected, positions, signs * math.sqrt(math.log(4.0)))
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(vector, expected, atol=1e-6)
    assert sorted(np.abs(vector[vector != 0]).round(6)) == [round(1 / math.sqrt(3), 6)] * 3


def test_inner_products_rank_like_bm25(stats: LexicalStats, documents: tuple[str, ...]) -> None:
    engine = embedder(stats)
    scores = engine.embed_queries(["東京タワーの高さ"]) @ engine.embed_passages(list(documents)).T
    assert int(np.argmax(scores[0])) == 2


def test_passages_below_the_norm_cap_share_one_scale(stats: LexicalStats) -> None:
    engine = embedder(stats)
    short, long = engine.embed_passages(["富士山", "富士山は日本最高峰の山である。"])
    # the padding component makes up the rest of the unit length
    assert 0 < short[-1] < 1 and 0 < long[-1] < 1
    assert short[-1] > long[-1], "a shorter passage has a smaller BM25 vector"


def test_question_phrases_are_left_out_of_queries_only(stats: LexicalStats) -> None:
    phrases = QuestionPhrases(["何", "は何"])
    engine = HashingEmbedder(HashingEmbedderConfig(), stats, phrases)
    asked, plain = engine.embed_queries(["富士山は何", "富士山は"])
    np.testing.assert_array_equal(asked, plain)
    passage_asked, passage_plain = engine.embed_passages(["富士山は何", "富士山は"])
    assert not np.array_equal(passage_asked, passage_plain)


def test_identity_names_every_setting_that_changes_vectors(stats: LexicalStats) -> None:
    identity = HashingEmbedder(HashingEmbedderConfig(), stats, QuestionPhrases(["何"])).identity
    assert identity.dimension == 8192
    assert identity.settings["ngram_orders"] == [1, 2]
    assert identity.settings["question_phrases"] == QuestionPhrases(["何"]).fingerprint()
    other = HashingEmbedder(HashingEmbedderConfig(), stats, QuestionPhrases(["誰"])).identity
    assert identity.differences(other)
    off = HashingEmbedder(HashingEmbedderConfig(ignore_question_phrases=False), stats).identity
    assert off.settings["question_phrases"] is None


def test_config_rejects_mismatched_weights() -> None:
    with pytest.raises(ValueError, match="one weight per entry"):
        HashingEmbedderConfig(ngram_orders=(1, 2, 3), order_weights=(1.0, 1.0))


def test_orders_without_statistics_are_refused(stats: LexicalStats) -> None:
    with pytest.raises(ValueError, match="no statistics for n-gram orders"):
        embedder(stats, ngram_orders=(4,), order_weights=(1.0,))


def test_empty_query_is_a_zero_vector(stats: LexicalStats) -> None:
    assert not embedder(stats).embed_queries([""]).any()
