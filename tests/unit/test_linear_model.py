from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from deployments.lexical.linear_model import LinearModel


def model(**changes: object) -> LinearModel:
    settings: dict[str, object] = {
        "features": ("a", "b"),
        "mean": np.array([1.0, 0.0], np.float32),
        "scale": np.array([2.0, 1.0], np.float32),
        "weights": np.array([1.0, -0.5], np.float32),
        "slope": 2.0,
        "intercept": -1.0,
        "question_phrases": ("何",),
    }
    settings.update(changes)
    return LinearModel(**settings)  # type: ignore[arg-type]


def test_score_is_the_weighted_sum_of_standardized_features() -> None:
    scores = model().score(np.array([[3.0, 2.0], [1.0, 0.0]], np.float32))
    # (3 - 1) / 2 * 1 + 2 * -0.5 = 0 ; 0
    np.testing.assert_allclose(scores, [0.0, 0.0])
    np.testing.assert_allclose(model().score(np.array([[5.0, 0.0]])), [2.0])


def test_relevance_is_the_calibrated_probability() -> None:
    relevance = model().relevance(np.array([0.5, -100.0, 0.0, 100.0], np.float32))
    assert relevance[0] == pytest.approx(0.5)  # sigmoid(2 * 0.5 - 1)
    assert relevance[2] == pytest.approx(1 / (1 + math.e))
    assert 0 <= relevance[1] < 1e-20  # logit clipped at -60
    assert relevance[3] == pytest.approx(1.0)
    raw = np.linspace(-5, 5, 21, dtype=np.float32)
    assert np.all(np.diff(model().relevance(raw)) > 0)


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    model(training={"data": "x"}).save(path)
    loaded = LinearModel.load(path)
    assert loaded.features == ("a", "b") and loaded.question_phrases == ("何",)
    assert loaded.training == {"data": "x"}
    np.testing.assert_allclose(loaded.weights, [1.0, -0.5])
    assert (loaded.slope, loaded.intercept) == (2.0, -1.0)


def test_invalid_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one value per feature"):
        model(weights=np.array([1.0], np.float32))
    with pytest.raises(ValueError, match="scale must be positive"):
        model(scale=np.array([0.0, 1.0], np.float32))
    with pytest.raises(ValueError, match="slope must be positive"):
        model(slope=0.0)
    with pytest.raises(ValueError, match="retrain it"):
        model().require_features(("a", "c"), "python -m x")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 99}', encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported"):
        LinearModel.load(bad)
    with pytest.raises(FileNotFoundError):
        LinearModel.load(tmp_path / "missing.json")
