"""The application's typed configuration: the ``args:`` block of a Serve config."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from deployments.config import StrictConfig
from deployments.embedder.config import EmbedderConfig, HashingEmbedderConfig
from deployments.generator.config import ExtractiveGeneratorConfig, GeneratorConfig
from deployments.ingress.config import IngressConfig, RetrievalDefaults
from deployments.reranker.config import LexicalRerankerConfig, RerankerConfig
from deployments.retriever.config import (
    DEFAULT_KNOWLEDGE_BASE,
    IndexConfig,
    KnowledgeBaseConfig,
    KnowledgeBasesInput,
    RetrieverConfig,
    knowledge_base_list,
)


class AppConfig(StrictConfig):
    """One RAG graph. Resources and replica counts are not here: they belong in the
    Serve config's ``deployments:`` section (names Ingress, Embedder, Retriever,
    Reranker, Generator)."""

    index: IndexConfig = Field(
        description="The index to serve, as the knowledge base named 'default'; with "
        "knowledge_bases it may be left out (it is then the first knowledge base's index)."
    )
    knowledge_bases: KnowledgeBasesInput | None = Field(
        None,
        description="Several indexes served at once, each a knowledge base: a mapping of "
        "name to index path, or a list of {name, path, description, version, "
        "verify_checksums}. The first is the default one (model id 'ja-rag'); each is "
        "also the model 'ja-rag/<name>' and Dify's knowledge id. Every index must have been "
        "built with the configured embedder. The Retriever deployment's user_config key "
        "knowledge_bases (same forms) replaces this set on running replicas.",
    )
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

    @model_validator(mode="before")
    @classmethod
    def _index_of_the_default_base(cls, data: Any) -> Any:
        """With knowledge_bases, ``index`` is the first one's (given or not)."""
        if not isinstance(data, dict) or data.get("knowledge_bases") is None:
            return data
        first = knowledge_base_list(_knowledge_bases(data["knowledge_bases"]))[0]
        derived = IndexConfig(
            path=first.path, version=first.version, verify_checksums=first.verify_checksums
        )
        given = data.get("index")
        if given is not None:
            given = IndexConfig.model_validate(given)
            if given != derived:
                raise ValueError(
                    "give either index (one knowledge base, named 'default') or "
                    "knowledge_bases (whose first one is the default)"
                )
        return {**data, "index": derived}

    @property
    def served_knowledge_bases(self) -> tuple[KnowledgeBaseConfig, ...]:
        """The knowledge bases the graph starts with, the default one first: ``index``
        is the default one's."""
        index = self.index.model_dump()
        if self.knowledge_bases is None:
            return (KnowledgeBaseConfig(name=DEFAULT_KNOWLEDGE_BASE, **index),)
        first, *others = knowledge_base_list(self.knowledge_bases)
        return (first.model_copy(update=index), *others)

    def retrieval_defaults(self) -> RetrievalDefaults:
        """What a chat request retrieves unless it says otherwise."""
        return RetrievalDefaults(top_k=self.retriever.top_k, top_n=self.reranker.top_n)


def _knowledge_bases(value: Any) -> KnowledgeBasesInput:
    if isinstance(value, dict):
        return {str(name): str(path) for name, path in value.items()}
    return [KnowledgeBaseConfig.model_validate(b) for b in value]
