"""A learned linear scorer over lexical features, its calibration to a probability,
and the question phrases its features were computed without.

Stored as a small JSON file: the reranker's ``deployments/reranker/lexical_weights.json``
(trained by ``python -m serve.training.reranker``) and the extractive generator's
``deployments/generator/sentence_weights.json`` (``python -m serve.training.generator``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LinearModel:
    """``score = sum(weights * (features - mean) / scale)``;
    ``relevance = sigmoid(slope * score + intercept)``."""

    features: tuple[str, ...]
    mean: NDArray[np.float32]
    scale: NDArray[np.float32]
    weights: NDArray[np.float32]
    slope: float
    intercept: float
    question_phrases: tuple[str, ...] = ()
    training: dict[str, Any] = field(default_factory=dict)
    """How the model was trained and how it scored on held-out questions."""

    def require_features(self, expected: tuple[str, ...], retrain_hint: str) -> None:
        """Fail unless the model was trained on exactly the ``expected`` features."""
        if self.features != expected:
            raise ValueError(
                f"the model was trained on features {list(self.features)}, but the engine "
                f"computes {list(expected)}: retrain it with `{retrain_hint}`"
            )

    def __post_init__(self) -> None:
        size = len(self.features)
        for name in ("mean", "scale", "weights"):
            if getattr(self, name).shape != (size,):
                raise ValueError(f"{name} needs one value per feature ({size})")
        if np.any(self.scale <= 0):
            raise ValueError("scale must be positive")
        if self.slope <= 0:
            raise ValueError("slope must be positive, so that relevance grows with the score")

    def score(self, features: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """(documents,) raw scores of a (documents, features) matrix."""
        standardized = (features - self.mean) / self.scale
        return np.asarray(standardized @ self.weights, dtype=np.float32)

    def relevance(self, scores: NDArray[np.float32]) -> NDArray[np.float32]:
        """Probability that a document is relevant, by logistic calibration of its score."""
        logits = self.slope * scores.astype(np.float64) + self.intercept
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "features": list(self.features),
            "mean": [round(float(x), 6) for x in self.mean],
            "scale": [round(float(x), 6) for x in self.scale],
            "weights": [round(float(x), 6) for x in self.weights],
            "calibration": {
                "slope": round(self.slope, 6),
                "intercept": round(self.intercept, 6),
            },
            "question_phrases": list(self.question_phrases),
            "training": self.training,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"unsupported linear model format {data.get('format_version')!r}; "
                f"expected {FORMAT_VERSION}"
            )
        try:
            return cls(
                features=tuple(str(f) for f in data["features"]),
                mean=np.asarray(data["mean"], dtype=np.float32),
                scale=np.asarray(data["scale"], dtype=np.float32),
                weights=np.asarray(data["weights"], dtype=np.float32),
                slope=float(data["calibration"]["slope"]),
                intercept=float(data["calibration"]["intercept"]),
                question_phrases=tuple(str(p) for p in data.get("question_phrases", [])),
                training=dict(data.get("training", {})),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed linear model: {error!r}") from error

    def save(self, path: Path) -> None:
        text = json.dumps(self.to_json(), ensure_ascii=False, indent=1)
        path.write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise FileNotFoundError(f"model weights {path} are missing") from error
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error.msg}") from error
        try:
            return cls.from_json(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
