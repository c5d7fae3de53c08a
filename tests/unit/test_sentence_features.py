from __future__ import annotations

import numpy as np

from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.sentence_features import (
    SENTENCE_FEATURE_NAMES,
    CandidateSentence,
    SentenceFeatures,
    candidate_sentences,
)

PASSAGES = (
    "東京タワーは東京都港区にある電波塔である。1958年に完成した。\n高さは333メートルである。",
    "将棋は二人で行うボードゲームである。",
)


def column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, SENTENCE_FEATURE_NAMES.index(name)]


def test_sentences_are_numbered_by_passage_and_split_by_line() -> None:
    assert candidate_sentences(PASSAGES) == [
        CandidateSentence(1, 0, "東京タワーは東京都港区にある電波塔である。"),
        CandidateSentence(1, 1, "1958年に完成した。"),
        CandidateSentence(1, 2, "高さは333メートルである。"),
        CandidateSentence(2, 0, "将棋は二人で行うボードゲームである。"),
    ]
    # a bracket left open on one line does not swallow the next line's sentences
    assert len(candidate_sentences(["括弧（閉じない\n一文目。二文目。"])) == 3


def test_features_of_each_sentence() -> None:
    extractor = SentenceFeatures(QuestionPhrases(["いつ", "ですか", "は何"]))
    sentences = candidate_sentences(PASSAGES)
    features = extractor.extract("完成したのはいつですか", sentences)
    assert features.shape == (4, len(SENTENCE_FEATURE_NAMES))
    coverage = column(features, "coverage_2")
    assert ((coverage >= 0) & (coverage <= 1)).all()
    assert int(np.argmax(coverage)) == 1, "完成した matches the second sentence best"
    np.testing.assert_allclose(column(features, "below_best_2"), coverage - coverage.max())
    np.testing.assert_allclose(column(features, "inverse_rank"), [1, 1, 1, 0.5])
    np.testing.assert_allclose(column(features, "log_position"), np.log1p([0, 1, 2, 0]))
    # いつ asks for a time: sentences with numerals (1958, 333, 二) get the cue
    np.testing.assert_array_equal(column(features, "when_and_number"), [0, 1, 1, 1])
    assert not column(features, "how_many_and_number").any()
    # the neighbour of the first sentence is the second
    assert column(features, "neighbour_coverage_2")[0] == coverage[1]


def test_no_sentences() -> None:
    extractor = SentenceFeatures(QuestionPhrases([]))
    assert extractor.extract("何", []).shape == (0, len(SENTENCE_FEATURE_NAMES))
