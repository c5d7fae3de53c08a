"""Typed configuration of the embedder stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deployments.batching import BatchingSettings


class HashingEmbedderConfig(BatchingSettings):
    """Built-in embedder: character n-grams hashed into a dense vector, BM25-weighted
    with document frequencies learned at index build. Needs no model and no GPU."""

    backend: Literal["hashing"] = Field("hashing", description="Selects this engine.")
    dimension: int = Field(4096, ge=64, le=1 << 16, description="Vector length.")
    ngram_orders: tuple[int, ...] = Field(
        (1, 2, 3), description="Character n-gram lengths that become features."
    )
    order_weights: tuple[float, ...] = Field(
        (0.3, 1.0, 0.7), description="Weight of each n-gram order, in the order of ngram_orders."
    )
    k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation of passages.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation of passages.")


EmbedderConfig = HashingEmbedderConfig
