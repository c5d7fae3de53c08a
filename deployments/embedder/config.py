"""Typed configuration of the embedder stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deployments.config import StrictConfig


class HashingEmbedderConfig(StrictConfig):
    """Built-in embedder: character n-grams hashed into a dense vector whose inner products
    are BM25 scores, with document frequencies learned at index build. Needs no model and
    no GPU."""

    backend: Literal["hashing"] = Field("hashing", description="Selects this engine.")
    dimension: int = Field(
        8192,
        ge=64,
        le=1 << 16,
        description="Vector length; the last component keeps passage vectors at unit length. "
        "More dimensions mean fewer hash collisions and a larger index (4 bytes each).",
    )
    ngram_orders: tuple[int, ...] = Field(
        (1, 2), description="Character n-gram lengths that become features."
    )
    order_weights: tuple[float, ...] = Field(
        (1.0, 1.0),
        description="Weight of each n-gram order's BM25 in the score, in the order of "
        "ngram_orders.",
    )
    k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation of passages.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation of passages.")
    norm_cap: float = Field(
        1.5,
        gt=0,
        description="Passage vectors are scaled by one common factor, so that inner products "
        "rank like BM25, except those whose norm exceeds norm_cap times the norm expected at "
        "the corpus's average length: those are scaled to that norm instead (cosine-like).",
    )

    ignore_question_phrases: bool = Field(
        True,
        description="Leave question phrases (何年, どこで, ですか, ...) out of query vectors: "
        "rare in documents, they would weigh much yet say nothing about the topic. The "
        "phrases ship with the package (deployments/lexical/question_phrases.json).",
    )

    @model_validator(mode="after")
    def _one_weight_per_order(self) -> HashingEmbedderConfig:
        if len(self.order_weights) != len(self.ngram_orders):
            raise ValueError("order_weights needs one weight per entry of ngram_orders")
        if not self.ngram_orders or any(n < 1 for n in self.ngram_orders):
            raise ValueError("ngram_orders must list positive n-gram lengths")
        if any(w <= 0 for w in self.order_weights):
            raise ValueError("order_weights must be positive")
        return self


EmbedderConfig = HashingEmbedderConfig
