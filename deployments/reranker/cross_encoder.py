"""Reranker engine over a sentence-transformers ``CrossEncoder`` (ruri-reranker, bge, ...)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deployments.extras import check_japanese_tokenizer, require
from deployments.reranker.config import CrossEncoderRerankerConfig
from deployments.torch_runtime import resolve_device, torch_dtype

logger = logging.getLogger(__name__)


class CrossEncoderReranker:
    """Scores (query, document) pairs with one forward pass per batch.

    ``score`` returns raw scores: the logit of a one-output model (ruri-reranker,
    ms-marco cross-encoders), or for a two-class model the relevant class's logit
    minus the other's. ``relevance`` is their sigmoid, in 0..1 (for a two-class
    model, exactly the softmax probability of the relevant class).
    """

    def __init__(self, config: CrossEncoderRerankerConfig) -> None:
        purpose = f"the cross-encoder reranker ({config.model})"
        st = require("sentence_transformers", "models", purpose)
        torch = require("torch", "models", purpose)
        check_japanese_tokenizer(config.model, config.revision)
        self.config = config
        self.device = resolve_device(config.device, purpose)
        self.model: Any = st.CrossEncoder(
            config.model,
            device=self.device,
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
            max_length=config.max_seq_length,
            model_kwargs={"dtype": torch_dtype(config.dtype, self.device)},
        )
        self.model.eval()
        self.num_labels = int(self.model.num_labels)
        if self.num_labels not in (1, 2):
            raise ValueError(
                f"{config.model} has {self.num_labels} output labels; a reranker needs 1 "
                "(a relevance logit) or 2 (not relevant, relevant)"
            )
        self._identity = torch.nn.Identity()
        logger.info("loaded %s on %s (%d labels)", config.model, self.device, self.num_labels)

    @property
    def model_name(self) -> str:
        return self.config.model

    def score(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]:
        return self.score_pairs([(query, d) for d in documents])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> NDArray[np.float32]:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        logits = np.asarray(
            self.model.predict(
                list(pairs),
                batch_size=self.config.max_batch_size,
                activation_fn=self._identity,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )
        if self.num_labels == 2:
            return np.ascontiguousarray(logits[:, 1] - logits[:, 0])
        return np.ascontiguousarray(logits.reshape(len(pairs)))

    def relevance(self, raw_scores: NDArray[np.float32]) -> NDArray[np.float32]:
        return sigmoid(raw_scores)


def sigmoid(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """1 / (1 + e^-x), without overflow for large negative x."""
    x64 = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x64)
    positive = x64 >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x64[positive]))
    e = np.exp(x64[~positive])
    out[~positive] = e / (1.0 + e)
    return out.astype(np.float32)
