"""Typed configuration of the reranker stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deployments.batching import BatchingSettings


class LexicalRerankerConfig(BatchingSettings):
    """Built-in reranker: a lexical relevance model over character n-gram features."""

    backend: Literal["lexical"] = Field("lexical", description="Selects this engine.")
    top_n: int = Field(5, ge=1, le=100, description="Passages kept for the generator.")
    max_batch_size: int = Field(
        256, ge=1, le=4096, description="Most (query, document) pairs scored in one engine call."
    )


RerankerConfig = LexicalRerankerConfig
