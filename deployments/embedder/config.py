"""Typed configuration of the embedder stage: one model per ``backend``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Tag, model_validator

from deployments.batching import BatchingSettings
from deployments.config import backend_discriminator
from deployments.torch_runtime import Device, DType


class HashingEmbedderConfig(BatchingSettings):
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


PrefixPreset = Literal["ruri-v1", "ruri-v3", "multilingual-e5", "none"]

PREFIX_PRESETS: dict[str, tuple[str, str]] = {
    "ruri-v1": ("クエリ: ", "文章: "),
    "ruri-v3": ("検索クエリ: ", "検索文書: "),
    "multilingual-e5": ("query: ", "passage: "),
    "none": ("", ""),
}
"""(query prefix, passage prefix) each model family was trained with."""


class SentenceTransformersEmbedderConfig(BatchingSettings):
    """A sentence-transformers model (ruri, multilingual-e5, ...) from the Hugging Face hub
    or a local directory. Install with ``pip install 'ja-rag-serve[models]'`` (plus ``[ja]``
    for models whose tokenizer runs MeCab, such as ruri v1)."""

    backend: Literal["sentence-transformers"] = Field(description="Selects this engine.")
    model: str = Field(
        description="Hugging Face model id (e.g. cl-nagoya/ruri-large) or a local directory. "
        "Recorded in the index manifest as written: index and serve with the same string."
    )
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) to pin; default: the main branch."
    )
    prefix_preset: PrefixPreset = Field(
        "none",
        description="Query/passage prefixes of a model family: ruri-v1 ('クエリ: '/'文章: '), "
        "ruri-v3 ('検索クエリ: '/'検索文書: '), multilingual-e5 ('query: '/'passage: ') or none.",
    )
    query_prefix: str | None = Field(
        None, description="Text put before every query; overrides the preset's."
    )
    passage_prefix: str | None = Field(
        None, description="Text put before every passage; overrides the preset's."
    )
    normalize: bool = Field(
        True,
        description="L2-normalise vectors. The retriever scores by inner product, so leave it on "
        "unless the model ends in its own Normalize module.",
    )
    max_seq_length: int | None = Field(
        None, ge=8, le=32768, description="Tokens kept per text; default: the model's own limit."
    )
    device: Device = Field(
        "auto", description="'auto' uses a CUDA GPU when the replica has one, else the CPU."
    )
    dtype: DType = Field(
        "auto", description="Weight precision; 'auto' is float16 on GPU and float32 on CPU."
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the hub to run (needed by a few models)."
    )

    @property
    def prefixes(self) -> tuple[str, str]:
        """The (query, passage) prefixes in effect."""
        query, passage = PREFIX_PRESETS[self.prefix_preset]
        return (
            query if self.query_prefix is None else self.query_prefix,
            passage if self.passage_prefix is None else self.passage_prefix,
        )

    @model_validator(mode="after")
    def _asymmetric_models_need_prefixes(self) -> SentenceTransformersEmbedderConfig:
        name = self.model.lower()
        if self.prefix_preset == "none" and self.query_prefix is None:
            for family, hint in (("ruri", "ruri-v1 or ruri-v3"), ("e5", "multilingual-e5")):
                if family in name.rsplit("/", 1)[-1]:
                    raise ValueError(
                        f"{self.model} is trained with query/passage prefixes: set prefix_preset "
                        f"({hint}) or query_prefix and passage_prefix (empty strings for none)"
                    )
        return self


EmbedderConfig = Annotated[
    Annotated[HashingEmbedderConfig, Tag("hashing")]
    | Annotated[SentenceTransformersEmbedderConfig, Tag("sentence-transformers")],
    backend_discriminator("hashing"),
]
"""The embedder section of the application config, chosen by ``backend``."""
