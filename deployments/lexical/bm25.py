"""BM25's term-frequency saturation, shared by the embedder and the reranker features."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def saturated_tf(
    tf: NDArray[np.int64] | NDArray[np.float32], length_ratio: float, k1: float, b: float
) -> NDArray[np.float32]:
    """``tf (k1 + 1) / (tf + k1 (1 - b + b length_ratio))``: 1 for one occurrence in a
    document of average length, approaching ``k1 + 1`` as ``tf`` grows."""
    tf_f = np.asarray(tf, dtype=np.float32)
    return (tf_f * (k1 + 1) / (tf_f + k1 * (1 - b + b * length_ratio))).astype(np.float32)
