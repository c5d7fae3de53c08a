"""What every reranker engine provides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class RerankerEngine(Protocol):
    """Scores how well each document answers a query.

    ``score`` returns raw scores (higher is better, scale specific to the model);
    ``relevance`` maps raw scores to 0..1 so that clients can set thresholds.
    """

    @property
    def model_name(self) -> str: ...

    def score(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]: ...

    def relevance(self, raw_scores: NDArray[np.float32]) -> NDArray[np.float32]: ...
