"""The Retriever deployment: FAISS search with concurrent queries batched."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deployments.batching import Batcher, with_batching
from deployments.health import probe
from deployments.index.format import (
    EmbedderIdentity,
    check_embedder,
    read_manifest,
    resolve_version_dir,
)
from deployments.metrics import StageMetrics
from deployments.passage import Hit
from deployments.placement import replica_placement
from deployments.retriever.config import (
    DEFAULT_KNOWLEDGE_BASE,
    IndexConfig,
    KnowledgeBaseConfig,
    RetrieverConfig,
    knowledge_base_list,
)
from deployments.retriever.factory import create_retriever
from deployments.retriever.filters import MetadataFilter
from deployments.retriever.protocol import RetrieverEngine
from deployments.retriever.search_parameters import SearchParameters

logger = logging.getLogger(__name__)


class UnknownKnowledgeBase(LookupError):
    """A search named a knowledge base this replica does not serve."""

    def __init__(self, name: str, served: Sequence[str]) -> None:
        super().__init__(
            f"knowledge base {name!r} does not exist; served: {', '.join(served) or 'none'}"
        )
        self.name = name
        self.served = tuple(served)

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a replica, it is pickled to the caller: rebuilt from its arguments.
        return (UnknownKnowledgeBase, (self.name, self.served))


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    """A served knowledge base: its config and the engine over its index version."""

    config: KnowledgeBaseConfig
    engine: RetrieverEngine

    def summary(self) -> dict[str, Any]:
        m = self.engine.manifest
        return {
            "name": self.config.name,
            "description": self.config.description,
            "index": str(self.engine.version_dir),
            "version": m.version,
            "passages": m.num_passages,
            "documents": m.num_documents,
            "created_at": m.created_at,
        }


@dataclass(frozen=True, slots=True)
class _SearchCall:
    vector: NDArray[np.float32]
    top_k: int
    base: KnowledgeBase
    where: MetadataFilter | None
    params: SearchParameters | None = None


EngineFactory = Callable[[RetrieverConfig, IndexConfig, Path], RetrieverEngine]


class Retriever:
    """Searches the knowledge bases it serves (one index version each); refuses an
    index built by another embedder.

    One deployment serves every knowledge base: each replica holds all their FAISS
    indexes, their passages memory-mapped (pages shared between replicas on a node,
    and read only when found), so one replica set scales with the query load whatever
    the number of bases. ``knowledge_bases`` in the deployment's ``user_config``
    replaces the served set on running replicas (``serve deploy``), without a restart.
    """

    def __init__(
        self,
        config: RetrieverConfig,
        knowledge_bases: IndexConfig | Sequence[KnowledgeBaseConfig],
        index_dir: str | None = None,
        engine_cls: EngineFactory | None = None,
    ) -> None:
        """``knowledge_bases`` is one index (served as the knowledge base 'default',
        from ``index_dir``, its resolved version directory) or a list of named ones
        (their paths resolved here unless already version directories). The first is
        the default one; every other must have been built by the same embedder."""
        self.config = config
        self._make_engine: EngineFactory = engine_cls or create_retriever
        if isinstance(knowledge_bases, KnowledgeBaseConfig):
            knowledge_bases = [knowledge_bases]
        if isinstance(knowledge_bases, IndexConfig):
            single = KnowledgeBaseConfig(
                name=DEFAULT_KNOWLEDGE_BASE,
                **knowledge_bases.model_dump(),
            )
            first = self._load(single, Path(index_dir) if index_dir else None, None)
            bases = [first]
        else:
            configs = knowledge_base_list(list(knowledge_bases))
            first = self._load(configs[0], None, None)
            identity = first.engine.manifest.embedder
            bases = [first, *(self._load(c, None, identity) for c in configs[1:])]
        self._initial = tuple(b.config for b in bases)
        """The set given at construction: served again when user_config names none."""
        self.embedder_identity = first.engine.manifest.embedder
        """The identity every served index must have been built with: the first one's,
        which the Embedder checked against itself."""
        self._bases: dict[str, KnowledgeBase] = {b.config.name: b for b in bases}
        self.metrics = StageMetrics("retrieve")
        self._batcher = Batcher(self._search_all, config)

    @property
    def engine(self) -> RetrieverEngine:
        """The default (first) knowledge base's engine."""
        return next(iter(self._bases.values())).engine

    def _load(
        self,
        base: KnowledgeBaseConfig,
        version_dir: Path | None,
        reference: EmbedderIdentity | None,
    ) -> KnowledgeBase:
        directory = version_dir or resolve_version_dir(base.path, base.version)
        if reference is not None:
            manifest = read_manifest(directory, verify=False)
            check_embedder(manifest, reference, directory)
        return KnowledgeBase(base, self._make_engine(self.config, base, directory))

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batching settings and the served ``knowledge_bases`` (a ``name: path``
        mapping or a list of ``{name, path, ...}``) from the deployment's
        ``user_config``, applied live: new bases are loaded before the set is swapped,
        so searches never wait on a load; a base kept with the same settings keeps its
        loaded index. Without ``knowledge_bases`` the set given at construction (the
        args') is served."""
        settings = dict(user_config)
        wanted = settings.pop("knowledge_bases", None)
        self.config = with_batching(self.config, settings)
        self._batcher.configure(self.config)
        configs = (
            self._initial
            if wanted is None
            else knowledge_base_list(
                wanted
                if isinstance(wanted, dict)
                else [KnowledgeBaseConfig.model_validate(b) for b in wanted]
            )
        )
        if [b.config for b in self._bases.values()] != list(configs):
            self._bases = await asyncio.to_thread(self._reload, configs)

    def _reload(self, configs: Sequence[KnowledgeBaseConfig]) -> dict[str, KnowledgeBase]:
        loaded: dict[str, KnowledgeBase] = {}
        for base in configs:
            current = self._bases.get(base.name)
            if current is not None and current.config == base:
                loaded[base.name] = current
                continue
            version_dir = resolve_version_dir(base.path, base.version)
            if (
                current is not None
                and current.engine.version_dir == version_dir
                and current.config.verify_checksums == base.verify_checksums
            ):
                # The same index version (named by its root, say, where the args pinned
                # its version directory): kept loaded, with the new description.
                loaded[base.name] = KnowledgeBase(base, current.engine)
                continue
            loaded[base.name] = self._load(base, version_dir, self.embedder_identity)
        added = sorted(set(loaded) - set(self._bases))
        removed = sorted(set(self._bases) - set(loaded))
        logger.info("knowledge bases: %s (added %s, removed %s)", list(loaded), added, removed)
        return loaded

    def knowledge_base(self, name: str | None) -> KnowledgeBase:
        """The served base ``name`` (the default one for None)."""
        bases = self._bases
        if name is None:
            return next(iter(bases.values()))
        try:
            return bases[name]
        except KeyError:
            raise UnknownKnowledgeBase(name, list(bases)) from None

    async def knowledge_bases(self) -> list[dict[str, Any]]:
        """Every served knowledge base, the default one first."""
        return [b.summary() for b in self._bases.values()]

    async def search(
        self,
        vector: NDArray[np.float32],
        top_k: int,
        knowledge_base: str | None = None,
        where: MetadataFilter | None = None,
        params: SearchParameters | None = None,
    ) -> list[Hit]:
        """The ``top_k`` passages of ``knowledge_base`` (default: the first) nearest one
        query vector, only those whose metadata match ``where`` when given, searched with
        ``params`` (nprobe, ef_search, k_factor) instead of the index's settings when
        given; concurrent searches with the same filter and parameters share a FAISS call."""
        base = self.knowledge_base(knowledge_base)
        with self.metrics.call():
            hits = await self._batcher.submit(_SearchCall(vector, top_k, base, where, params))
        self.metrics.candidates(len(hits))
        return hits

    def _search_all(self, calls: list[_SearchCall]) -> list[list[Hit]]:
        """One FAISS call per knowledge base and filter in the batch, at the largest
        ``top_k`` asked."""
        results: list[list[Hit]] = [[] for _ in calls]
        groups: dict[tuple[int, MetadataFilter | None, SearchParameters | None], list[int]] = {}
        for i, call in enumerate(calls):
            groups.setdefault((id(call.base), call.where, call.params), []).append(i)
        for members in groups.values():
            first = calls[members[0]]
            k = max(calls[i].top_k for i in members)
            vectors = np.stack([calls[i].vector for i in members])
            found = first.base.engine.search(vectors, k, first.where, first.params)
            for i, hits in zip(members, found, strict=True):
                results[i] = hits[: calls[i].top_k]
        return results

    async def describe(self) -> dict[str, Any]:
        m = self.engine.manifest
        return {
            "knowledge_bases": [b.summary() for b in self._bases.values()],
            "index": str(self.engine.version_dir),
            "version": m.version,
            "passages": m.num_passages,
            "documents": m.num_documents,
            "faiss_factory": m.faiss_factory,
            "embedder": m.embedder.model,
            "placement": replica_placement(),
        }

    async def check_health(self) -> None:
        """Searches the index for a probe vector, reading the passage found, off the
        event loop, within a time limit."""
        bases = list(self._bases.values())

        def search_and_read() -> None:
            for base in bases:
                engine = base.engine
                vector = np.zeros((1, engine.dimension), dtype=np.float32)
                vector[0, 0] = 1.0
                hits = engine.search(vector, 1)[0]
                if engine.manifest.num_passages and (not hits or not hits[0].passage.id):
                    raise RuntimeError(
                        f"retriever found no readable passage of knowledge base "
                        f"{base.config.name!r} for a probe vector"
                    )

        await probe("retriever", asyncio.to_thread(search_and_read))
