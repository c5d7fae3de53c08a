"""The application's typed configuration: the ``args:`` block of a Serve config."""

from __future__ import annotations

from pydantic import Field

from deployments.config import StrictConfig
from deployments.embedder.config import EmbedderConfig, HashingEmbedderConfig
from deployments.generator.config import ExtractiveGeneratorConfig, GeneratorConfig
from deployments.ingress.config import IngressConfig, RetrievalDefaults
from deployments.reranker.config import LexicalRerankerConfig, RerankerConfig
from deployments.retriever.config import IndexConfig, RetrieverConfig


class AppConfig(StrictConfig):
    """One RAG graph. Resources and replica counts are not here: they belong in the
    Serve config's ``deployments:`` section (names Ingress, Embedder, Retriever,
    Reranker, Generator)."""

    index: IndexConfig = Field(description="The index to serve.")
    embedder: EmbedderConfig = Field(
        default_factory=HashingEmbedderConfig, description="Embedder engine; must match the index."
    )
    retriever: RetrieverConfig = Field(default_factory=RetrieverConfig, description="FAISS search.")
    reranker: RerankerConfig = Field(
        default_factory=LexicalRerankerConfig, description="Reranker engine."
    )
    generator: GeneratorConfig = Field(
        default_factory=ExtractiveGeneratorConfig, description="Generator engine."
    )
    ingress: IngressConfig = Field(default_factory=IngressConfig, description="HTTP API.")

    def retrieval_defaults(self) -> RetrievalDefaults:
        """What a chat request retrieves unless it says otherwise."""
        return RetrievalDefaults(top_k=self.retriever.top_k, top_n=self.reranker.top_n)
