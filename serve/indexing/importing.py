"""``jarag index import``: vectors made elsewhere, as a version of this project's index.

The input is the passages file (any corpus format; one record a row, in the order
of the vectors) and either a FAISS index file built from their vectors or the
vectors themselves (``.npy``, or ``.npz`` holding one array). The embedder that
made them is declared, not loaded: its identity goes into the manifest, so the
server still refuses the index when it runs another embedder. Each record stays
one passage (no chunking: row ``i`` is vector ``i``), malformed records fail the
import, and a dimension or a row count that disagrees is refused before anything
is published.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from deployments.config import StrictConfig
from deployments.embedder.config import (
    EmbedderConfig,
    HashingEmbedderConfig,
    SentenceTransformersEmbedderConfig,
)
from deployments.embedder.factory import create_embedder, score_free_components
from deployments.embedder.sentence_transformers import sentence_transformers_identity
from deployments.index.format import (
    FAISS_FILE,
    ChunkingSettings,
    EmbedderIdentity,
    IndexManifest,
    start_version,
)
from deployments.index.passages import PassageStore, PassageStoreWriter
from deployments.lexical.stats import LexicalStats
from deployments.passage import Passage
from serve.indexing.build import BuildSettings, build_faiss, publish_version
from serve.indexing.corpus import read_documents

logger = logging.getLogger(__name__)

VECTOR_ARRAY_NAMES = ("vectors", "embeddings")
"""Names an ``.npz`` array of vectors may have when the file holds several arrays."""
NORM_SAMPLE = 1000
"""Vectors checked for unit length when the declared embedder normalises."""
NORM_TOLERANCE = 1e-2


class IndexImportError(ValueError):
    """Imported files that disagree with each other or with the declared embedder."""


class DeclaredEmbedder(StrictConfig):
    """The embedder that made the imported vectors, as the server will run it."""

    config: EmbedderConfig = Field(
        description="The embedder section the server runs with (model id, prefixes, "
        "normalisation); no model is loaded to import."
    )
    dimension: int = Field(ge=1, description="Length of every vector.")
    max_seq_length: int | None = Field(
        None,
        ge=8,
        description="sentence-transformers: the token limit the model reports (its "
        "max_seq_length), part of its identity; default: the config's max_seq_length.",
    )

    def identity(self, version_dir: Path) -> EmbedderIdentity:
        """The identity a server running this embedder reports; ``version_dir`` holds the
        corpus statistics the built-in embedder needs."""
        config = self.config
        if isinstance(config, HashingEmbedderConfig):
            if config.dimension != self.dimension:
                raise IndexImportError(
                    f"the built-in embedder is configured with {config.dimension} dimensions, "
                    f"the vectors are declared with {self.dimension}"
                )
            return create_embedder(config, version_dir).identity
        if isinstance(config, SentenceTransformersEmbedderConfig):
            limit = self.max_seq_length or config.max_seq_length
            if limit is None:
                raise IndexImportError(
                    f"declare the token limit of {config.model} (--max-seq-length, e.g. 512 "
                    "for ruri-large): the server records it in the embedder's identity"
                )
            return sentence_transformers_identity(config, self.dimension, limit)
        raise TypeError(f"unsupported embedder config {type(config).__name__}")

    @property
    def normalizes(self) -> bool:
        """Whether the embedder's passage vectors are unit length."""
        config = self.config
        return isinstance(config, HashingEmbedderConfig) or config.normalize


class ImportSettings(StrictConfig):
    """How imported vectors become an index version."""

    faiss_factory: str = Field(
        "Flat", description="FAISS index_factory string for imported vectors (not a FAISS file)."
    )
    train_size: int = Field(
        100_000, ge=1, description="Most vectors used to train an index that needs it."
    )
    batch_size: int = Field(4096, ge=1, description="Vectors added to the index at a time.")
    make_current: bool = Field(True, description="Serve the new version once it is published.")
    progress: bool = Field(True, description="Show progress bars.")


def import_index(
    passages: Path,
    out: Path,
    embedder: DeclaredEmbedder,
    *,
    faiss_index: Path | None = None,
    vectors: Path | None = None,
    settings: ImportSettings | None = None,
) -> IndexManifest:
    """Publish ``passages`` with ``faiss_index`` (a FAISS index file) or ``vectors``
    (``.npy``/``.npz``), row-aligned, as a new version under ``out``."""
    settings = settings or ImportSettings()
    if (faiss_index is None) == (vectors is None):
        raise IndexImportError("give either a FAISS index file or a vectors file, not both")
    given = faiss_index if faiss_index is not None else vectors
    assert given is not None
    for path in (passages, given):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
    index: faiss.Index | None = None
    matrix: NDArray[np.floating] | None = None
    if faiss_index is not None:
        index = _read_faiss(faiss_index, embedder)
        num_vectors = int(index.ntotal)
    else:
        assert vectors is not None
        matrix = _read_vectors(vectors, embedder)
        num_vectors = len(matrix)
    out = out.expanduser().resolve()
    building = start_version(out)
    try:
        num_passages, longest = _write_passages(passages, building)
        if num_passages != num_vectors:
            raise IndexImportError(
                f"{passages} holds {num_passages} passages but {given} holds {num_vectors} "
                "vectors: the passages must be the rows the vectors were made from, in order"
            )
        store = PassageStore(building)
        try:
            LexicalStats.fit(p.document_text for p in store).save(building)
        finally:
            store.close()
        identity = embedder.identity(building)
        if index is not None:
            assert faiss_index is not None
            shutil.copyfile(faiss_index, building / FAISS_FILE)
            factory = f"imported {type(faiss.downcast_index(index)).__name__}"
        else:
            assert matrix is not None
            build = BuildSettings(
                faiss_factory=settings.faiss_factory,
                train_size=settings.train_size,
                progress=settings.progress,
            )
            rows = partial(_matrix_rows, matrix, settings.batch_size)
            built = build_faiss(
                embedder.dimension, num_vectors, rows, build, score_free_components(identity)
            )
            faiss.write_index(built, str(building / FAISS_FILE))
            factory = settings.faiss_factory
        return publish_version(
            building,
            out,
            embedder=identity,
            faiss_factory=factory,
            num_passages=num_passages,
            num_documents=num_passages,
            chunking=ChunkingSettings(max_chars=longest, overlap_chars=0),
            sources=[str(passages), str(given)],
            make_current=settings.make_current,
        )
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _read_faiss(path: Path, embedder: DeclaredEmbedder) -> faiss.Index:
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:
        raise IndexImportError(f"{path} is not a FAISS index file ({error})") from error
    if index.d != embedder.dimension:
        raise IndexImportError(
            f"{path} holds {index.d}-dimensional vectors; the embedder is declared with "
            f"{embedder.dimension} dimensions"
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexImportError(
            f"{path} does not search by inner product (FAISS metric {index.metric_type}): "
            "this project scores by the inner product of unit vectors; rebuild it with "
            "faiss.METRIC_INNER_PRODUCT or import its vectors (.npy) instead"
        )
    inner = faiss.downcast_index(index)
    if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        ids = faiss.vector_to_array(inner.id_map)
        if not np.array_equal(ids, np.arange(len(ids))):
            raise IndexImportError(
                f"{path} maps its vectors to ids other than their row numbers: passage i "
                "must be vector i"
            )
    if embedder.normalizes and index.ntotal:
        try:
            sample = index.reconstruct_n(0, min(NORM_SAMPLE, index.ntotal))
        except RuntimeError:  # an index that keeps no vectors (PQ, IVF without a map)
            sample = None
        if sample is not None:
            _check_unit_length(sample, path)
    return index


def _read_vectors(path: Path, embedder: DeclaredEmbedder) -> NDArray[np.floating]:
    name = path.name.lower()
    matrix: NDArray[np.floating]
    if name.endswith(".npy"):
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    elif name.endswith(".npz"):
        with np.load(path, allow_pickle=False) as arrays:
            names = list(arrays.files)
            chosen = names if len(names) == 1 else [n for n in VECTOR_ARRAY_NAMES if n in names]
            if not chosen:
                raise IndexImportError(
                    f"{path} holds arrays {', '.join(names) or '(none)'}: name the vectors one "
                    f"of {', '.join(VECTOR_ARRAY_NAMES)} or store only them"
                )
            matrix = arrays[chosen[0]]
    else:
        raise IndexImportError(f"{path}: vectors are read from .npy or .npz files")
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise IndexImportError(
            f"{path} holds a {matrix.dtype} array of shape {matrix.shape}; expected "
            "floating-point vectors, one row per passage"
        )
    if matrix.shape[1] != embedder.dimension:
        raise IndexImportError(
            f"{path} holds {matrix.shape[1]}-dimensional vectors; the embedder is declared "
            f"with {embedder.dimension} dimensions"
        )
    if embedder.normalizes and len(matrix):
        _check_unit_length(matrix[:NORM_SAMPLE], path)
    return matrix


def _check_unit_length(sample: NDArray[np.floating], path: Path) -> None:
    norms = np.linalg.norm(np.asarray(sample, dtype=np.float64), axis=1)
    off = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if len(off):
        row = int(off[0])
        raise IndexImportError(
            f"{path}: vector {row} has length {norms[row]:.4g}, but the declared embedder "
            "makes unit vectors: normalise them, or declare an embedder that does not "
            "normalise (--no-normalize)"
        )


def _write_passages(source: Path, building: Path) -> tuple[int, int]:
    """One passage a record, strictly in order; the count and the longest text."""
    longest = 0
    with PassageStoreWriter(building) as writer:
        for document in read_documents(source):
            writer.add(
                Passage(
                    document.id,
                    document.id,
                    document.title,
                    document.text,
                    document.url,
                    document.metadata,
                )
            )
            longest = max(longest, len(document.text))
        writer.close()
        return len(writer), longest


def _matrix_rows(
    matrix: NDArray[np.floating], batch_size: int, rows: NDArray[np.int64]
) -> Iterator[NDArray[np.float32]]:
    for start in range(0, len(rows), batch_size):
        yield np.ascontiguousarray(matrix[rows[start : start + batch_size]], dtype=np.float32)
