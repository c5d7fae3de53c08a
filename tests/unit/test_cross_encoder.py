"""The cross-encoder reranker, loaded through the real CrossEncoder(path)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder

from deployments.extras import MissingDependencyError
from deployments.passage import Hit, Passage
from deployments.reranker.config import CrossEncoderRerankerConfig
from deployments.reranker.cross_encoder import CrossEncoderReranker, sigmoid
from deployments.reranker.protocol import PairScorer, RerankScores, rank_hits
from serve.bench import random_models
from tests.conftest import TinyModels

QUERY = "香川県の県庁所在地はどこですか"
DOCUMENTS = ["香川県の県庁所在地は高松市である。", "沖縄県の県庁所在地は那覇市である。", "京都"]


def config(model: Path, **settings: object) -> CrossEncoderRerankerConfig:
    return CrossEncoderRerankerConfig.model_validate(
        {"backend": "cross-encoder", "model": str(model), **settings}
    )


@pytest.fixture(scope="module")
def reranker(tiny_models: TinyModels) -> CrossEncoderReranker:
    return CrossEncoderReranker(config(tiny_models.cross_encoder))


def test_raw_is_the_logit_and_relevance_its_sigmoid(
    reranker: CrossEncoderReranker, tiny_models: TinyModels
) -> None:
    model = CrossEncoder(str(tiny_models.cross_encoder), device="cpu")
    pairs = [(QUERY, d) for d in DOCUMENTS]
    logits = model.predict(pairs, activation_fn=torch.nn.Identity())
    probabilities = model.predict(pairs)  # the model's own default activation: sigmoid
    raw = reranker.score(QUERY, DOCUMENTS)
    assert raw.dtype == np.float32 and raw.shape == (3,)
    assert np.allclose(raw, logits, atol=1e-6)
    assert np.allclose(reranker.relevance(raw), probabilities, atol=1e-6)


def test_pairs_of_several_queries_score_in_one_call(reranker: CrossEncoderReranker) -> None:
    assert isinstance(reranker, PairScorer)
    together = reranker.score_pairs([(QUERY, DOCUMENTS[0]), ("沖縄", DOCUMENTS[1])])
    assert np.allclose(together[0], reranker.score(QUERY, DOCUMENTS[:1])[0], atol=1e-6)
    assert np.allclose(together[1], reranker.score("沖縄", DOCUMENTS[1:2])[0], atol=1e-6)
    assert reranker.score(QUERY, []).shape == (0,)


def test_two_class_models_score_the_relevant_class(tiny_models: TinyModels, tmp_path: Path) -> None:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_models.cross_encoder))
    shape = random_models.ENCODER_SHAPES["tiny"]
    torch.manual_seed(1)
    bert = transformers.BertForSequenceClassification(
        random_models.bert_config(tokenizer, shape, num_labels=2)
    )
    bert.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    engine = CrossEncoderReranker(config(tmp_path))
    logits = CrossEncoder(str(tmp_path), device="cpu").predict(
        [(QUERY, d) for d in DOCUMENTS], activation_fn=torch.nn.Identity()
    )
    raw = engine.score(QUERY, DOCUMENTS)
    assert np.allclose(raw, logits[:, 1] - logits[:, 0], atol=1e-6)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(engine.relevance(raw), softmax[:, 1], atol=1e-6)


def test_sigmoid_is_stable_at_the_extremes() -> None:
    values = sigmoid(np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0], dtype=np.float32))
    assert np.all(np.isfinite(values))
    assert values[0] == 0.0 and values[2] == 0.5 and values[-1] == 1.0
    assert np.all(np.diff(values) >= 0)


def test_rank_hits_orders_by_raw_score() -> None:
    hits = [Hit(Passage(str(i), str(i), "t", "x"), score=0.1) for i in range(3)]
    raw = np.array([0.5, 2.0, -1.0], dtype=np.float32)
    ranked = rank_hits(hits, RerankScores(raw, sigmoid(raw)), top_n=2)
    assert [h.passage.id for h in ranked] == ["1", "0"]
    assert ranked[0].rerank_score == 2.0 and ranked[0].relevance == pytest.approx(0.8807971)


def test_missing_sentence_transformers_names_the_extra(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependencyError, match=r"ja-rag-serve\[models\]"):
        CrossEncoderReranker(config(tiny_models.cross_encoder))
