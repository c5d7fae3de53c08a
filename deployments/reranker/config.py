"""Typed configuration of the reranker stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deployments.config import StrictConfig


class LexicalRerankerConfig(StrictConfig):
    """Built-in reranker: a lexical relevance model over character n-gram features."""

    backend: Literal["lexical"] = Field("lexical", description="Selects this engine.")
    top_n: int = Field(5, ge=1, le=100, description="Passages kept for the generator.")
    max_batch_size: int = Field(16, ge=1, description="Concurrent rerank calls scored together.")
    batch_wait_timeout_s: float = Field(
        0.002, ge=0, description="Longest wait for a batch to fill before scoring."
    )


RerankerConfig = LexicalRerankerConfig
