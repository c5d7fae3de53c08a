"""The built-in reranker: a linear model over lexical features, learned on JaQuAD."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from deployments.lexical.features import FEATURE_NAMES, LexicalFeatures
from deployments.lexical.linear_model import LinearModel
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.stats import LexicalStats
from deployments.reranker.config import LexicalRerankerConfig


class LexicalReranker:
    """Scores documents with ``LinearModel`` over ``LexicalFeatures``.

    Raw scores are comparable across queries; ``relevance`` is the model's calibrated
    probability that a document answers the query.
    """

    def __init__(
        self,
        config: LexicalRerankerConfig,
        stats: LexicalStats,
        model: LinearModel | None = None,
    ) -> None:
        self.config = config
        self.model = model if model is not None else LinearModel.load(config.weights_file)
        self.model.require_features(FEATURE_NAMES, "python -m serve.training.reranker")
        self.features = LexicalFeatures(stats, QuestionPhrases(self.model.question_phrases))

    @property
    def model_name(self) -> str:
        return "lexical-linear"

    def score(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]:
        return self.model.score(self.features.extract(query, documents))

    def relevance(self, raw_scores: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.model.relevance(raw_scores)
