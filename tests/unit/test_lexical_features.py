from __future__ import annotations

import math

import numpy as np
import pytest

from deployments.lexical import features as lexical_features
from deployments.lexical.features import FEATURE_NAMES, LexicalFeatures
from deployments.lexical.ngrams import codepoints, hashed_ngrams
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.stats import LexicalStats


def column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, FEATURE_NAMES.index(name)]


@pytest.fixture(scope="module")
def extractor(stats: LexicalStats) -> LexicalFeatures:
    return LexicalFeatures(stats, QuestionPhrases(["何", "ですか", "は何"]))


def test_one_row_of_features_per_document(
    extractor: LexicalFeatures, documents: tuple[str, ...]
) -> None:
    features = extractor.extract("富士山の標高は何メートルですか", list(documents))
    assert features.shape == (5, len(FEATURE_NAMES)) and features.dtype == np.float32
    assert np.isfinite(features).all()
    for name in ("window_1", "narrow_window_1", "rarest_found_2", "word_coverage"):
        assert ((column(features, name) >= 0) & (column(features, name) <= 1 + 1e-6)).all()
    assert (column(features, "narrow_window_1") <= column(features, "window_1") + 1e-6).all()
    # every feature that measures a match favours the 富士山 document
    for name in ("bm25_1", "bm25_2", "bm25_3", "word_coverage", "title_in_query"):
        assert int(np.argmax(column(features, name))) == 0, name


def test_bm25_of_bigrams_by_hand(extractor: LexicalFeatures, stats: LexicalStats) -> None:
    document = "富士山\n富士山は富士"  # the bigram 富士 three times in 9 characters
    features = extractor.extract("富士", [document])
    idf = float(stats.idf_of(2, hashed_ngrams(codepoints("富士"), 2))[0])
    assert idf == pytest.approx(math.log(4.0))  # in one of five documents
    norm = 1.2 * (1 - 0.75 + 0.75 * 9 / stats.average_length)
    assert column(features, "bm25_2")[0] == pytest.approx(idf * 3 * 2.2 / (3 + norm), rel=1e-5)


def test_content_words_count_by_length(extractor: LexicalFeatures) -> None:
    # content words of the query: 東京 (2 characters) and タワー (3); 高 is too short
    features = extractor.extract("東京タワーの高さ", ["東京の空", "タワー", "東京タワー"])
    np.testing.assert_allclose(column(features, "word_coverage"), [0.4, 0.6, 1.0], rtol=1e-6)


def test_title_share_in_query(extractor: LexicalFeatures, documents: tuple[str, ...]) -> None:
    features = extractor.extract("富士山の高さ", [documents[0], documents[1], "見出しのない文書"])
    np.testing.assert_allclose(column(features, "title_in_query"), [1.0, 0.0, 0.0])


def test_body_coverage_ignores_bigrams_of_the_title(extractor: LexicalFeatures) -> None:
    # 富士 is in the title, so only 標高 counts: found in the first body, not in the second
    features = extractor.extract("富士の標高", ["富士\n標高が高い", "富士\n山が高い"])
    assert column(features, "body_coverage_2")[0] > column(features, "body_coverage_2")[1]


def test_question_phrases_weigh_nothing(extractor: LexicalFeatures) -> None:
    features = extractor.extract("何", ["何", "これは何ですか"])
    assert not column(features, "bm25_1").any()


def test_empty_query_or_no_documents(extractor: LexicalFeatures) -> None:
    assert not extractor.extract("", ["富士山"]).any()
    assert extractor.extract("富士山", []).shape == (0, len(FEATURE_NAMES))
    assert np.isfinite(extractor.extract("?", ["富士山", ""])).all()


def test_long_documents_are_cut(extractor: LexicalFeatures) -> None:
    features = extractor.extract("富士山", ["富士山" + "あ" * 10_000])
    assert column(features, "log_length")[0] == pytest.approx(math.log1p(2048))


def test_only_documents_of_passage_size_are_kept(extractor: LexicalFeatures) -> None:
    kept = lexical_features._kept_view_of
    kept.cache_clear()
    extractor.extract("富士山", ["富士山" + "あ" * lexical_features.CACHED_DOCUMENT_CHARS])
    assert kept.cache_info().currsize == 0
    extractor.extract("富士山", ["富士山は日本一高い山です。"] * 3)
    assert kept.cache_info().currsize == 1 and kept.cache_info().hits == 2


def test_a_documents_features_do_not_depend_on_its_batch_or_earlier_calls(
    extractor: LexicalFeatures, documents: tuple[str, ...]
) -> None:
    # Documents' cleaned text is kept between calls: the same document must give the
    # same row (up to float rounding) in any batch, any position, after any other call.
    query = "富士山の標高は何メートルですか"
    batch = list(documents)
    first = extractor.extract(query, batch)
    extractor.extract("琵琶湖はどこにありますか", batch[::-1])
    np.testing.assert_allclose(extractor.extract(query, batch[::-1]), first[::-1], rtol=1e-5)
    for i, document in enumerate(batch):
        np.testing.assert_allclose(extractor.extract(query, [document])[0], first[i], rtol=1e-5)
