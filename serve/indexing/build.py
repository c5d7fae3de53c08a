"""Index building: the same embedder engines as serving, published atomically."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from tqdm import tqdm

from deployments.config import StrictConfig
from deployments.embedder.config import EmbedderConfig
from deployments.embedder.factory import create_embedder, score_free_components
from deployments.embedder.protocol import EmbedderEngine
from deployments.index.format import (
    FAISS_FILE,
    FORMAT_VERSION,
    ChunkingSettings,
    EmbedderIdentity,
    IndexManifest,
    finish_manifest,
    new_version_name,
    publish,
    start_version,
)
from deployments.index.passages import PassageStore, PassageStoreWriter
from deployments.lexical.stats import LexicalStats
from serve.indexing.corpus import CorpusProblems, Document, read_corpus, split_documents
from serve.indexing.factory import AUTO, choose_factory, is_approximate
from serve.indexing.ray_build import (
    RayEmbedding,
    discard_shards,
    discard_vectors,
    embed_with_ray_data,
)

logger = logging.getLogger(__name__)


class BuildSettings(StrictConfig):
    """How an index version is built."""

    faiss_factory: str = Field(
        "Flat",
        description="FAISS index_factory string: 'Flat' searches exactly; 'HNSW32' or "
        "'IVF4096,PQ64' scale to millions of passages; 'auto' chooses by the corpus size "
        "and ram_budget_gib (the rule of serve/indexing/factory.py: Flat, HNSW32, "
        "IVF-SQ8, then IVF-PQ re-scored against memory-mapped full vectors).",
    )
    ram_budget_gib: float = Field(
        8.0,
        gt=0,
        description="RAM one Retriever replica may give the index, for faiss_factory 'auto'.",
    )
    chunking: ChunkingSettings = Field(
        ChunkingSettings(max_chars=500, overlap_chars=100),
        description="How documents are cut into passages.",
    )
    batch_size: int = Field(256, ge=1, description="Passages embedded per engine call.")
    train_size: int = Field(
        100_000, ge=1, description="Most vectors used to train an index that needs it (IVF, PQ)."
    )
    make_current: bool = Field(True, description="Serve the new version once it is published.")
    ray: RayEmbedding | None = Field(
        None,
        description="Embed with Ray Data over a Ray cluster instead of in this process "
        "(Wikipedia-scale corpora).",
    )
    progress: bool = Field(True, description="Show progress bars.")
    strict: bool = Field(
        False,
        description="Fail on the first malformed corpus record instead of skipping it "
        "(a skipped one is logged with its file and line, and counted).",
    )


def build_index(
    sources: Sequence[Path],
    out: Path,
    embedder_config: EmbedderConfig,
    settings: BuildSettings | None = None,
    problems: CorpusProblems | None = None,
) -> IndexManifest:
    """Read, chunk, embed and index ``sources`` (corpus files or folders of them) into a
    new version under ``out``.

    Malformed records are skipped, logged and counted in ``problems`` (one is made
    when not given), or fail the build with ``settings.strict``.
    """
    settings = settings or BuildSettings()
    problems = problems if problems is not None else CorpusProblems()
    if not sources:
        raise ValueError("no input files given")
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist")
    out = out.expanduser().resolve()
    building = start_version(out)
    try:
        num_documents = _write_passages(
            sources, building, settings, None if settings.strict else problems
        )
        if problems.count:
            logger.warning("skipped %d malformed corpus records", problems.count)
        store = PassageStore(building)
        if len(store) == 0:
            raise ValueError("the input files hold no passages")
        try:
            with _progress(settings, len(store), "statistics") as bar:
                stats = LexicalStats.fit(_counting(bar, (p.document_text for p in store)))
            stats.save(building)
            if settings.ray is None:
                embedder = create_embedder(embedder_config, building)
                identity = embedder.identity
                vectors: VectorSource = partial(_embed_rows, store, embedder, settings.batch_size)
            else:
                identity, matrix = embed_with_ray_data(
                    building,
                    embedder_config,
                    len(store),
                    settings.batch_size,
                    settings.ray,
                    settings.progress,
                )
                vectors = partial(_read_rows, matrix, settings.batch_size)
            if settings.faiss_factory == AUTO:
                chosen = choose_factory(
                    len(store),
                    identity.dimension,
                    settings.ram_budget_gib * 2**30,
                    settings.train_size,
                )
                logger.info("faiss_factory auto: %s for %d passages", chosen, len(store))
                settings = settings.model_copy(update={"faiss_factory": chosen})
            if identity.backend == "hashing" and is_approximate(settings.faiss_factory):
                logger.warning(
                    "%s over the built-in embedder's lexical vectors: approximate indexes "
                    "find far fewer of the exact neighbours of such sparse vectors than of "
                    "dense sentence embeddings (docs/quality.md, 'Compressed indexes and "
                    "the built-in embedder'); prefer Flat or a sentence-transformers "
                    "embedder",
                    settings.faiss_factory,
                )
            index = build_faiss(
                identity.dimension,
                len(store),
                vectors,
                settings,
                score_free_components(identity),
            )
        finally:
            store.close()
            discard_vectors(building)
        faiss.write_index(index, str(building / FAISS_FILE))
        manifest = publish_version(
            building,
            out,
            embedder=identity,
            faiss_factory=settings.faiss_factory,
            num_passages=int(index.ntotal),
            num_documents=num_documents,
            chunking=settings.chunking,
            sources=[str(s) for s in sources],
            make_current=settings.make_current,
        )
        discard_shards(out)
        return manifest
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def publish_version(
    building: Path,
    out: Path,
    *,
    embedder: EmbedderIdentity,
    faiss_factory: str,
    num_passages: int,
    num_documents: int,
    chunking: ChunkingSettings,
    sources: list[str],
    make_current: bool,
) -> IndexManifest:
    """The manifest of a complete version in ``building`` written (checksums last), and
    the version published under ``out``."""
    version = new_version_name()
    manifest = finish_manifest(
        building,
        IndexManifest(
            format_version=FORMAT_VERSION,
            version=version,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            embedder=embedder,
            faiss_factory=faiss_factory,
            num_passages=num_passages,
            num_documents=num_documents,
            chunking=chunking,
            sources=sources,
            files={},
        ),
    )
    publish(building, out, version, make_current=make_current)
    return manifest


def _write_passages(
    sources: Sequence[Path],
    building: Path,
    settings: BuildSettings,
    problems: CorpusProblems | None,
) -> int:
    """Write the passages of every document; returns how many documents there were
    (the reader yields each id once)."""
    num_documents = 0

    def counted(documents: Iterator[Document]) -> Iterator[Document]:
        nonlocal num_documents
        for document in documents:
            num_documents += 1
            yield document

    c = settings.chunking
    documents = counted(read_corpus(sources, problems))
    with PassageStoreWriter(building) as writer, _progress(settings, None, "passages") as bar:
        for passage in split_documents(documents, c.max_chars, c.overlap_chars):
            writer.add(passage)
            bar.update(1)
        writer.close()
    return num_documents


VectorSource = Callable[[NDArray[np.int64]], Iterator[NDArray[np.float32]]]
"""The vectors of the given passage rows, in order, a batch at a time."""


def build_faiss(
    dimension: int,
    total: int,
    vectors: VectorSource,
    settings: BuildSettings,
    score_free: Sequence[int] = (),
) -> faiss.Index:
    """A FAISS index of ``settings.faiss_factory`` over ``total`` vectors (trained on a
    sample of them first when the factory needs it; an IVF's lists clustered without
    the ``score_free`` components, see _train_lists_without)."""
    index = faiss.index_factory(dimension, settings.faiss_factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rows = np.sort(np.random.default_rng(0).permutation(total)[: settings.train_size])
        logger.info("training %s on %d vectors", settings.faiss_factory, len(rows))
        sample = np.concatenate(list(vectors(rows)))
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None and score_free:
            _train_lists_without(ivf, sample, score_free)
        else:
            _cluster_on_gpus(index)
        index.train(sample)
    with _progress(settings, total, "indexing") as bar:
        for batch in vectors(np.arange(total)):
            if batch.shape[1:] != (dimension,):
                raise ValueError(f"embedder returned {batch.shape}, expected (n, {dimension})")
            index.add(batch)
            bar.update(len(batch))
    return index


def _train_lists_without(
    ivf: faiss.IndexIVF, sample: NDArray[np.float32], score_free: Sequence[int]
) -> None:
    """The IVF's centroids from the components queries use: spherical k-means (as FAISS
    trains an inner-product IVF) over the sample with the ``score_free`` ones zeroed,
    scaled to the mean norm of what is left so that residuals stay small. The built-in
    embedder's unit-length filler, shared by every passage, would otherwise pull every
    centroid one way and leave most passages in a few lists. FAISS then trains the
    codes (PQ, SQ) on the residuals of the whole vectors."""
    used = sample.copy()
    used[:, list(score_free)] = 0.0
    kmeans = faiss.Kmeans(ivf.d, ivf.nlist, spherical=True, seed=1234, gpu=_gpu_count() > 0)
    kmeans.train(used)
    centroids = np.asarray(kmeans.centroids, dtype=np.float32)
    scale = np.float32(np.linalg.norm(used, axis=1).mean())
    ivf.quantizer.add(centroids * scale)


def _gpu_count() -> int:
    """GPUs faiss-gpu sees (0 with the CPU build)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _cluster_on_gpus(index: faiss.Index) -> None:
    """Where faiss-gpu sees GPUs, an IVF index's k-means assigns its training vectors on
    them (the slow part of training at Wikipedia scale); on CPU nothing changes."""
    ivf = faiss.try_extract_index_ivf(index)
    if _gpu_count() == 0 or ivf is None:
        return
    logger.info("training the IVF lists on %d GPUs", _gpu_count())
    ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(ivf.d))


def _embed_rows(
    store: PassageStore, embedder: EmbedderEngine, batch_size: int, rows: NDArray[np.int64]
) -> Iterator[NDArray[np.float32]]:
    for start in range(0, len(rows), batch_size):
        texts = [store[int(r)].document_text for r in rows[start : start + batch_size]]
        yield embedder.embed_passages(texts)


def _read_rows(
    matrix: NDArray[np.float32], batch_size: int, rows: NDArray[np.int64]
) -> Iterator[NDArray[np.float32]]:
    for start in range(0, len(rows), batch_size):
        yield np.ascontiguousarray(matrix[rows[start : start + batch_size]])


def _counting(bar: tqdm, texts: Iterator[str]) -> Iterator[str]:
    for text in texts:
        yield text
        bar.update(1)


def _progress(settings: BuildSettings, total: int | None, what: str) -> tqdm:
    return tqdm(total=total, desc=what, unit=" passages", disable=not settings.progress)
