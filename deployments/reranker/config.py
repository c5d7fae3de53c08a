"""Typed configuration of the reranker stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from deployments.config import StrictConfig

DEFAULT_WEIGHTS = Path(__file__).with_name("lexical_weights.json")
"""Weights trained on JaQuAD by ``python -m serve.reranker_training``."""


class LexicalRerankerConfig(StrictConfig):
    """Built-in reranker: a linear model over lexical features (BM25 of character n-grams,
    coverage, proximity, longest match, content words, title), trained on JaQuAD."""

    backend: Literal["lexical"] = Field("lexical", description="Selects this engine.")
    weights_path: str | None = Field(
        None,
        description="JSON weights written by `python -m serve.reranker_training`; "
        "default: the weights shipped with the package.",
    )
    top_n: int = Field(5, ge=1, le=100, description="Passages kept for the generator.")
    max_batch_size: int = Field(16, ge=1, description="Concurrent rerank calls scored together.")
    batch_wait_timeout_s: float = Field(
        0.002, ge=0, description="Longest wait for a batch to fill before scoring."
    )

    @property
    def weights_file(self) -> Path:
        return Path(self.weights_path).expanduser() if self.weights_path else DEFAULT_WEIGHTS


RerankerConfig = LexicalRerankerConfig
