"""Typed configuration of the reranker stage: one model per ``backend``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, Tag

from deployments.batching import BatchingSettings
from deployments.config import backend_discriminator
from deployments.torch_runtime import Device, DType

DEFAULT_WEIGHTS = Path(__file__).with_name("lexical_weights.json")
"""Weights trained on JaQuAD by ``python -m serve.training.reranker``."""


class LexicalRerankerConfig(BatchingSettings):
    """Built-in reranker: a linear model over lexical features (BM25 of character n-grams,
    coverage, proximity, longest match, content words, title), trained on JaQuAD."""

    backend: Literal["lexical"] = Field("lexical", description="Selects this engine.")
    weights_path: str | None = Field(
        None,
        description="JSON weights written by `python -m serve.training.reranker`; "
        "default: the weights shipped with the package.",
    )
    top_n: int = Field(
        5,
        ge=1,
        le=100,
        description="Passages a chat request gives the generator unless it sets rag.top_n "
        "(in the retriever's order when the reranker is unavailable).",
    )
    max_batch_size: int = Field(
        256, ge=1, le=4096, description="Most (query, document) pairs scored in one engine call."
    )

    @property
    def weights_file(self) -> Path:
        return Path(self.weights_path).expanduser() if self.weights_path else DEFAULT_WEIGHTS


class CrossEncoderRerankerConfig(BatchingSettings):
    """A sentence-transformers ``CrossEncoder`` (e.g. cl-nagoya/ruri-reranker-large) from the
    hub or a local directory. Install with ``pip install 'ja-rag-serve[models]'`` (plus
    ``[ja]`` for models whose tokenizer runs MeCab).

    Raw scores are the model's logit (for a two-class model, the relevant class's logit
    minus the other's); relevance is their sigmoid, a probability-like 0..1 value.
    """

    backend: Literal["cross-encoder"] = Field(description="Selects this engine.")
    model: str = Field(description="Hugging Face model id or a local directory.")
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) to pin; default: the main branch."
    )
    top_n: int = Field(
        5,
        ge=1,
        le=100,
        description="Passages a chat request gives the generator unless it sets rag.top_n "
        "(in the retriever's order when the reranker is unavailable).",
    )
    max_batch_size: int = Field(
        64,
        ge=1,
        le=4096,
        description="Most (query, document) pairs in one forward pass; concurrent requests "
        "share it.",
    )
    max_seq_length: int | None = Field(
        None,
        ge=8,
        le=32768,
        description="Tokens kept per (query, document) pair; default: the model's own limit.",
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


RerankerConfig = Annotated[
    Annotated[LexicalRerankerConfig, Tag("lexical")]
    | Annotated[CrossEncoderRerankerConfig, Tag("cross-encoder")],
    backend_discriminator("lexical"),
]
"""The reranker section of the application config, chosen by ``backend``."""
