"""The retriever engine: batched FAISS inner-product search plus passage lookup."""

from __future__ import annotations

import logging
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
from deployments.passage import Hit
from deployments.retriever.config import RetrieverConfig

logger = logging.getLogger(__name__)


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
        index = faiss.read_index(str(version_dir / FAISS_FILE))
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

    def search(self, queries: NDArray[np.float32], top_k: int) -> list[list[Hit]]:
        """The ``top_k`` passages nearest each query row, best first."""
        k = min(top_k, self.manifest.num_passages)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise ValueError(f"queries must have shape (n, {self.dimension}), got {queries.shape}")
        if k == 0:
            return [[] for _ in range(len(queries))]
        # A process-wide FAISS setting: set on every call, as engines of other
        # dimensions may share the process (it only chooses how distances are computed).
        faiss.cvar.distance_compute_blas_threshold = self._blas_threshold
        scores, rows = self.index.search(queries, k)
        return [
            [
                Hit(passage=self.passages[int(row)], score=float(score))
                for score, row in zip(score_row, row_row, strict=True)
                if row >= 0
            ]
            for score_row, row_row in zip(scores, rows, strict=True)
        ]

    def close(self) -> None:
        self.passages.close()


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
