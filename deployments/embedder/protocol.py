"""What every embedder engine provides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from deployments.index.format import EmbedderIdentity


class EmbedderEngine(Protocol):
    """Turns texts into float32 rows of unit length (inner product = cosine)."""

    @property
    def identity(self) -> EmbedderIdentity: ...

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]: ...

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]: ...
