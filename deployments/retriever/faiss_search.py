"""The retriever engine: batched FAISS inner-product search plus passage lookup."""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from deployments.index.format import (
    FAISS_FILE,
    EmbedderIdentity,
    IndexManifest,
    InvalidIndexError,
    check_embedder,
    read_manifest,
)
from deployments.index.passages import PassageStore
from deployments.passage import Hit, Metadata
from deployments.retriever.config import RetrieverConfig
from deployments.retriever.filters import MetadataFilter
from deployments.retriever.search_parameters import SearchParameters, faiss_parameters

logger = logging.getLogger(__name__)

EXACT_FILTERED_ROWS = 20_000
"""A filtered search that the index's own search with a selector cannot answer in full
(a graph index's search runs out of neighbours that match) scores the matching rows
one by one, from their stored vectors, when at most this many rows match."""
GPU_MAX_K = 2048
"""The most neighbours FAISS's GPU indexes return for one query."""
FILTER_CACHE_SIZE = 128
"""Filters whose matching rows a knowledge base keeps (a row list each)."""
MMAP_FLAGS = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) | getattr(faiss, "IO_FLAG_READ_ONLY", 0)
"""read_index flags that map an index's flat vector storage (Flat, HNSW's vectors, the
full vectors of a re-scored IVF-PQ) from the file, shared by the replicas of a node
through the page cache, instead of copying it; IVF lists are read into memory. A FAISS
without them (an older release) reads the whole file."""


class FaissRetriever:
    """Searches one index version; loads and verifies it at construction."""

    def __init__(
        self,
        version_dir: Path,
        config: RetrieverConfig,
        expected_embedder: EmbedderIdentity | None = None,
        verify_checksums: bool = True,
    ) -> None:
        self.version_dir = version_dir
        self.config = config
        self.manifest: IndexManifest = read_manifest(version_dir, verify=verify_checksums)
        if expected_embedder is not None:
            check_embedder(self.manifest, expected_embedder, version_dir)
        if config.threads is not None:
            faiss.omp_set_num_threads(config.threads)
        index = faiss.read_index(str(version_dir / FAISS_FILE), MMAP_FLAGS if config.mmap else 0)
        if index.ntotal != self.manifest.num_passages:
            raise InvalidIndexError(
                f"{version_dir / FAISS_FILE} holds {index.ntotal} vectors, "
                f"manifest says {self.manifest.num_passages}"
            )
        for name, value in config.search_parameters.items():
            faiss.ParameterSpace().set_index_parameter(index, name, value)
        self.index, self._gpu_resources = _to_device(index, config.device)
        self.passages = PassageStore(version_dir)
        self.dimension: int = int(index.d)
        # FAISS scans one query at a time while queries x dimension is below this.
        self._blas_threshold = config.blas_min_queries * self.dimension - 1
        self._metadata: list[Metadata] | None = None
        self._metadata_lock = threading.Lock()
        self._matching_rows = functools.lru_cache(maxsize=FILTER_CACHE_SIZE)(self._rows_matching)

    def search(
        self,
        queries: NDArray[np.float32],
        top_k: int,
        where: MetadataFilter | None = None,
        params: SearchParameters | None = None,
    ) -> list[list[Hit]]:
        """The ``top_k`` passages nearest each query row, best first; with ``where``,
        only passages whose metadata match it (``top_k`` of them when that many do);
        ``params`` overrides nprobe / efSearch / k_factor for this search, filtered or
        not."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise ValueError(f"queries must have shape (n, {self.dimension}), got {queries.shape}")
        # A process-wide FAISS setting: set on every call, as engines of other
        # dimensions may share the process (it only chooses how distances are computed).
        faiss.cvar.distance_compute_blas_threshold = self._blas_threshold
        if where is not None:
            wanted = params or SearchParameters()
            scores, rows = self._search_rows(queries, top_k, self.matching_rows(where), wanted)
        else:
            k = min(top_k, self.manifest.num_passages)
            if k == 0:
                return [[] for _ in range(len(queries))]
            scores, rows = self._search(queries, k, params)
        return [
            [
                Hit(passage=self.passages[int(row)], score=float(score))
                for score, row in zip(score_row, row_row, strict=True)
                if row >= 0
            ]
            for score_row, row_row in zip(scores, rows, strict=True)
        ]

    def matching_rows(self, where: MetadataFilter) -> NDArray[np.int64]:
        """The rows (ascending) whose passage metadata match ``where``. The first
        filtered search reads every passage's metadata once and keeps it; the rows of
        the last ``FILTER_CACHE_SIZE`` filters are kept too."""
        return self._matching_rows(where)

    def _rows_matching(self, where: MetadataFilter) -> NDArray[np.int64]:
        metadata = self._all_metadata()
        return np.fromiter(
            (row for row, fields in enumerate(metadata) if where.matches(fields)), dtype=np.int64
        )

    def _all_metadata(self) -> list[Metadata]:
        with self._metadata_lock:
            if self._metadata is None:
                logger.info("reading the metadata of %d passages", len(self.passages))
                self._metadata = [p.metadata for p in self.passages]
            return self._metadata

    def _search(
        self, queries: NDArray[np.float32], k: int, params: SearchParameters | None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The index's own search, with ``params`` where given and the index takes them."""
        faiss_params = None if params is None else faiss_parameters(self.index, params)
        if faiss_params is None:
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=faiss_params)

    def _search_rows(
        self,
        queries: NDArray[np.float32],
        top_k: int,
        rows: NDArray[np.int64],
        wanted: SearchParameters,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Search among ``rows`` only, with the ``wanted`` settings: FAISS's own search
        with a selector where the index takes one and it finds enough; the matching rows
        scored exactly from their stored vectors where few match; otherwise searches for
        ever more neighbours (doubling, at most the whole index) keeping those that
        match."""
        n = len(queries)
        k = min(top_k, len(rows))
        if k == 0:
            return np.zeros((n, 0), dtype=np.float32), np.zeros((n, 0), dtype=np.int64)
        found = self._selector_search(queries, k, rows, wanted)
        if found is not None and _enough(found[1], k):
            return found
        ivf = faiss.try_extract_index_ivf(self.index)
        if found is not None and ivf is not None:
            # The probed lists held too few matching rows: probe them all (only the
            # matching rows' distances are computed).
            every_list = wanted.model_copy(update={"nprobe": int(ivf.nlist)})
            found = self._selector_search(queries, k, rows, every_list)
            if found is not None and _enough(found[1], k):
                return found
        if len(rows) <= EXACT_FILTERED_ROWS:
            exact = self._exact_search(queries, k, rows)
            if exact is not None:
                return exact
        if found is not None:
            return found
        return self._overfetch_search(queries, k, rows, wanted)

    def _selector_search(
        self,
        queries: NDArray[np.float32],
        k: int,
        rows: NDArray[np.int64],
        wanted: SearchParameters,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]] | None:
        selector = faiss.IDSelectorBatch(rows)  # must outlive the search
        params = faiss_parameters(self.index, wanted, selector)
        if params is None:
            return None
        try:
            scores, found = self.index.search(queries, k, params=params)
        except (RuntimeError, TypeError) as error:  # this index type takes no selector
            logger.debug("FAISS search with a selector failed: %s", error)
            return None
        return scores, found

    def _exact_search(
        self, queries: NDArray[np.float32], k: int, rows: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]] | None:
        try:
            vectors = self.index.reconstruct_batch(rows)
        except RuntimeError:  # vectors not stored in a form it can give back
            return None
        similarities = queries @ np.asarray(vectors, dtype=np.float32).T
        order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(similarities, order, axis=1), rows[order]

    def _overfetch_search(
        self,
        queries: NDArray[np.float32],
        k: int,
        rows: NDArray[np.int64],
        wanted: SearchParameters,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        # FAISS on a GPU returns at most GPU_MAX_K neighbours per query.
        total = self.manifest.num_passages
        if self._gpu_resources is not None:
            total = min(total, GPU_MAX_K)
        fetched = min(max(k * 4, 64), total)
        while True:
            scores, found = self._search(queries, fetched, wanted)
            keep = np.isin(found, rows) & (found >= 0)
            if _enough(np.where(keep, 0, -1), k) or fetched >= total:
                break
            fetched = min(fetched * 2, total)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        for i in range(len(queries)):
            kept = np.flatnonzero(keep[i])[:k]
            out_scores[i, : len(kept)] = scores[i, kept]
            out_rows[i, : len(kept)] = found[i, kept]
        return out_scores, out_rows

    def close(self) -> None:
        self.passages.close()


def _enough(rows: NDArray[np.int64], k: int) -> bool:
    """Whether every query found ``k`` rows."""
    return bool((rows >= 0).sum(axis=1).min() >= k)


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _to_device(index: faiss.Index, device: str) -> tuple[faiss.Index, object | None]:
    """The index on the requested device, and the GPU resources that must outlive it."""
    gpus = gpu_count()
    if device == "cuda" and gpus == 0:
        raise RuntimeError(
            "retriever.device is 'cuda' but FAISS sees no GPU: install faiss-gpu "
            "(pip install 'ja-rag-serve[gpu]') on a node with a CUDA GPU, or set device: cpu"
        )
    if device == "cpu" or gpus == 0:
        return index, None
    resources = faiss.StandardGpuResources()
    logger.info("moving the FAISS index to GPU 0")
    return faiss.index_cpu_to_gpu(resources, 0, index), resources
