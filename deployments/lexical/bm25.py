"""BM25's term-frequency saturation, shared by the embedder and the reranker features."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def saturated_tf(
    tf: NDArray[np.int64],
    length_ratio: float | NDArray[np.float64],
    k1: float,
    b: float,
) -> NDArray[np.float32]:
    """``tf (k1 + 1) / (tf + k1 (1 - b + b length_ratio))``, with ``length_ratio`` the
    document's length over the average (broadcast against ``tf``): 1 for one occurrence
    in a document of average length, approaching ``k1 + 1`` as ``tf`` grows."""
    tf_f = tf.astype(np.float32)
    norm = np.asarray(k1 * (1 - b + b * np.asarray(length_ratio)), dtype=np.float32)
    return np.asarray(tf_f * (k1 + 1) / (tf_f + norm), dtype=np.float32)
