"""The built-in embedder and reranker with a fixed compute time per item.

A model on a GPU takes a roughly fixed time per text or per (query, passage) pair;
the built-in engines take almost none. These wrappers add that time (a sleep, so they
cost no CPU) to make a replica's capacity known and small: ``jarag bench autoscale``
and the multi-node tests load the graph until Serve must add replicas. They are
injected with ``build_graph(engines=...)``, never configured in a Serve config.
Results are exactly the built-in engines'.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from deployments.embedder.config import EmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.index.format import EmbedderIdentity
from deployments.reranker.config import RerankerConfig
from deployments.reranker.factory import create_reranker


class PacedEmbedder:
    """``seconds_per_text`` per text embedded, queries and passages alike: a batch of n
    texts takes n times as long, so batching adds no capacity."""

    def __init__(
        self, config: EmbedderConfig, index_dir: Path, seconds_per_text: float = 0.05
    ) -> None:
        self.inner = create_embedder(config, index_dir)
        self.seconds_per_text = seconds_per_text

    @property
    def identity(self) -> EmbedderIdentity:
        return self.inner.identity

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        time.sleep(self.seconds_per_text * len(texts))
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        time.sleep(self.seconds_per_text * len(texts))
        return self.inner.embed_passages(texts)


class PacedReranker:
    """``seconds_per_request`` per rerank request (its candidates scored together)."""

    def __init__(
        self, config: RerankerConfig, index_dir: Path, seconds_per_request: float = 0.05
    ) -> None:
        self.inner = create_reranker(config, index_dir)
        self.seconds_per_request = seconds_per_request

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def score(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]:
        time.sleep(self.seconds_per_request)
        return self.inner.score(query, documents)

    def relevance(self, raw_scores: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.inner.relevance(raw_scores)
