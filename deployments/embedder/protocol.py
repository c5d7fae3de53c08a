"""What every embedder engine provides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from deployments.config import StrictConfig


class EmbedderIdentity(StrictConfig):
    """Everything that decides which vector a text gets.

    Recorded in an index manifest; a server refuses an index whose identity
    differs from that of the embedder it runs.
    """

    backend: str = Field(description="Engine family, e.g. 'hashing' or 'sentence-transformers'.")
    model: str = Field(description="Model name or path, or the built-in scheme's name.")
    dimension: int = Field(description="Length of every vector.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Other settings that change vectors (prefixes, ...)."
    )

    def differences(self, other: EmbedderIdentity) -> list[str]:
        """Human-readable list of fields where ``other`` differs from this one."""
        mine, theirs = self.model_dump(), other.model_dump()
        return [
            f"{key}: {mine[key]!r} != {theirs[key]!r}" for key in mine if mine[key] != theirs[key]
        ]


class EmbedderEngine(Protocol):
    """Turns texts into float32 rows of unit length (inner product = cosine)."""

    @property
    def identity(self) -> EmbedderIdentity: ...

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]: ...

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]: ...
