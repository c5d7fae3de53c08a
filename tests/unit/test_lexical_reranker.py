from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deployments.lexical.features import FEATURE_NAMES
from deployments.lexical.linear_model import LinearModel
from deployments.lexical.stats import LexicalStats
from deployments.reranker.config import LexicalRerankerConfig
from deployments.reranker.factory import create_reranker
from deployments.reranker.lexical import LexicalReranker


@pytest.fixture(scope="module")
def reranker(stats: LexicalStats) -> LexicalReranker:
    return LexicalReranker(LexicalRerankerConfig(), stats)


def test_prefers_the_document_that_contains_the_answer(
    reranker: LexicalReranker, documents: tuple[str, ...]
) -> None:
    scores = reranker.score("東京タワーが完成したのは何年ですか", list(documents))
    assert scores.dtype == np.float32 and scores.shape == (5,)
    assert int(np.argmax(scores)) == 2
    scores = reranker.score("日本最高峰の山の標高は？", list(documents))
    assert int(np.argmax(scores)) == 0


def test_relevance_is_a_probability_that_grows_with_the_score(
    reranker: LexicalReranker, documents: tuple[str, ...]
) -> None:
    raw = reranker.score("将棋で勝つには相手の玉将をどうすればよいか", list(documents))
    relevance = reranker.relevance(raw)
    assert ((relevance > 0) & (relevance < 1)).all()
    order = np.argsort(raw)
    assert np.all(np.diff(relevance[order]) >= 0)
    # IDFs of a five-document corpus are small, so probabilities are too; the 将棋
    # document is still far likelier than the others
    assert int(np.argmax(relevance)) == 3
    assert relevance[3] > 100 * relevance[1]


def test_no_documents(reranker: LexicalReranker) -> None:
    assert reranker.score("富士山", []).shape == (0,)


def test_weights_path_selects_another_model(stats: LexicalStats, tmp_path: Path) -> None:
    only_bigrams = np.zeros(len(FEATURE_NAMES), np.float32)
    only_bigrams[FEATURE_NAMES.index("bm25_2")] = 1.0
    size = len(FEATURE_NAMES)
    path = tmp_path / "weights.json"
    LinearModel(
        FEATURE_NAMES, np.zeros(size, np.float32), np.ones(size, np.float32), only_bigrams, 1, 0
    ).save(path)
    engine = LexicalReranker(LexicalRerankerConfig(weights_path=str(path)), stats)
    documents = ["富士山", "山"]
    expected = engine.features.extract("富士山", documents)[:, FEATURE_NAMES.index("bm25_2")]
    np.testing.assert_allclose(engine.score("富士山", documents), expected)


def test_weights_for_other_features_are_refused(stats: LexicalStats) -> None:
    one = np.ones(1, np.float32)
    with pytest.raises(ValueError, match="retrain"):
        LexicalReranker(LexicalRerankerConfig(), stats, LinearModel(("x",), one, one, one, 1, 0))


def test_factory_reads_the_statistics_of_the_index(stats: LexicalStats, tmp_path: Path) -> None:
    stats.save(tmp_path)
    engine = create_reranker(LexicalRerankerConfig(), tmp_path)
    assert isinstance(engine, LexicalReranker)
    assert engine.model_name == "lexical-linear"
