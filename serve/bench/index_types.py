"""``jarag bench index``: FAISS index types side by side on synthetic clustered vectors
shaped like sentence embeddings, each figure also extrapolated to Japanese Wikipedia
(about 5.3 million passages).

The vectors: ``clusters`` centres drawn uniformly on the unit sphere (topics); each
point is its centre plus a move inside a low-rank subspace shared by all points (the
few directions along which sentences of one topic differ) plus a small isotropic
noise, normalised. Queries are drawn the same way and are not in the corpus. Uniform
noise would make every index look worse than on real embeddings (no structure to
exploit) and the nearest neighbours meaningless.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import faiss
import numpy as np
from numpy.typing import NDArray

from serve.indexing.factory import nlist_for

_FAISS: Any = faiss
"""FAISS's search-parameter classes take keyword arguments its type stubs do not declare."""

WIKIPEDIA_PASSAGES = 5_300_000
"""Passages of Japanese Wikipedia cut at 400 characters (jawiki 2023-04-03)."""
MMAP_FLAGS = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) | getattr(faiss, "IO_FLAG_READ_ONLY", 0)
"""read_index flags that memory-map an index's flat vector storage (IndexFlat, the
full vectors of IndexRefineFlat, the storage of HNSW) instead of copying it."""
RECALL_AT = 10
SUBSPACE_RANK = 48
"""Directions along which the points of one cluster spread."""


@dataclass(frozen=True)
class IndexBenchSettings:
    size: int = 1_000_000
    dim: int = 1024
    queries: int = 1000
    """Queries of the recall and batched-throughput measurement (one search call)."""
    single_queries: int = 200
    """Queries searched one at a time for the latency percentiles."""
    clusters: int = 0
    """Cluster centres; 0: size / 256, between 16 and 4,096."""
    train_size: int = 100_000
    """Most vectors an IVF index is trained on (a fixed random sample of the corpus)."""
    nprobes: tuple[int, ...] = (8, 16, 32)
    """IVF lists probed: every IVF index is searched at each (its operating points)."""
    ef_searches: tuple[int, ...] = (32, 64, 128)
    """HNSW candidate lists searched at."""
    pq_m: int = 64
    """PQ sub-quantizers (bytes per vector of the IVF-PQ codes). Trained without
    polysemous training ('np'), which takes minutes and serves only Hamming filtering."""
    k_factors: tuple[int, ...] = (4, 8, 16)
    """IVF-PQ candidates re-scored against the full vectors: k_factor x k, each with
    each nprobe."""
    threads: int = 0
    """OpenMP threads for FAISS; 0: FAISS's own choice."""
    seed: int = 0
    work_dir: Path | None = None
    """Where the index files are written for the load measurement (a temporary folder)."""

    @property
    def centres(self) -> int:
        return self.clusters or min(4096, max(16, self.size // 256))


QUICK = IndexBenchSettings(
    size=3_000,
    dim=64,
    queries=40,
    single_queries=10,
    train_size=3_000,
    nprobes=(4, 8),
    ef_searches=(64,),
    pq_m=16,
    k_factors=(8,),
    threads=1,
)
"""A smoke run in seconds (the test suite's); its figures are not meaningful."""

TARGET_RAM_BYTES_PER_VECTOR = 100
TARGET_RECALL = 0.95
TARGET_SPEEDUP = 50.0
"""The goal for Wikipedia scale: a configuration within this RAM per vector (full
vectors may stay on disk, memory-mapped) at this recall@10 and this many times Flat's
batched queries per second."""


@dataclass(frozen=True)
class IndexTypeResult:
    name: str
    factory: str
    search_parameters: dict[str, float]
    build_s: float
    """Training plus adding every vector."""
    ram_bytes_per_vector: float
    """Bytes each added vector adds to what must stay in RAM (codes, ids, graph links)."""
    fixed_ram_mib: float
    """What stays in RAM whatever the corpus size: IVF centroids, PQ codebooks."""
    disk_bytes_per_vector: float
    """Bytes per vector read from a memory-mapped file at search time only (the full
    vectors an IVF-PQ index re-scores its candidates against)."""
    loaded_ram_mib: float
    """Resident memory a fresh process gains by reading the index file (memory-mapped
    storage counts only once touched)."""
    mmap: bool
    """Whether the index file is read memory-mapped (MMAP_FLAGS)."""
    p50_ms: float
    p99_ms: float
    qps: float
    """Queries per second of one batched search call."""
    recall_at_10: float
    """Share of the exact top 10 found, over the batched queries."""
    speedup: float
    """Batched queries per second relative to Flat."""
    wikipedia: dict[str, float]
    """The figures extrapolated to WIKIPEDIA_PASSAGES (see extrapolate)."""


@dataclass(frozen=True)
class IndexBenchReport:
    settings: dict[str, Any]
    nlist: int
    train_vectors: int
    generate_s: float
    results: list[IndexTypeResult]
    """One row per index type and search setting (operating point)."""
    best: IndexTypeResult | None
    """The fastest row meeting the target (RAM, recall, speed), if any."""
    closest: IndexTypeResult | None
    """Else the fastest row meeting the RAM and recall parts of it, if any."""


def clustered_vectors(
    count: int, settings: IndexBenchSettings, stream: int, batch: int = 65_536
) -> Iterator[NDArray[np.float32]]:
    """``count`` unit vectors in batches; ``stream`` 0 is the corpus, 1 the queries, 2
    the warm-up queries (same centres and subspace, different points)."""
    shared = np.random.default_rng(settings.seed)
    centres = shared.standard_normal((settings.centres, settings.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rank = min(SUBSPACE_RANK, settings.dim)
    basis = np.linalg.qr(shared.standard_normal((settings.dim, rank)))[0].T.astype(np.float32)
    rng = np.random.default_rng([settings.seed, stream])
    for start in range(0, count, batch):
        n = min(batch, count - start)
        labels = rng.integers(0, settings.centres, n)
        moves = rng.standard_normal((n, rank), dtype=np.float32) * (0.6 / math.sqrt(rank))
        noise = rng.standard_normal((n, settings.dim), dtype=np.float32)
        points = centres[labels] + moves @ basis + noise * (0.25 / math.sqrt(settings.dim))
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        yield points


@dataclass(frozen=True)
class _Point:
    """One search setting of an index: an operating point."""

    name: str
    parameters: Any
    search_parameters: dict[str, float]
    codes_only: bool = False
    """Search a re-scored index's IVF-PQ part alone (its codes, no full vectors)."""


@dataclass(frozen=True)
class _Candidate:
    factory: str
    mmap: bool
    in_ram: str
    """Which part of the file stays in RAM: 'all', or 'codes' (the IVF-PQ part of a
    refined index, its full vectors memory-mapped)."""
    points: list[_Point]


def _candidates(settings: IndexBenchSettings, nlist: int) -> list[_Candidate]:
    def ivf(nprobe: int) -> Any:
        return _FAISS.SearchParametersIVF(nprobe=nprobe)

    rescored = [
        _Point(
            "IVF-PQ + re-scoring",
            _FAISS.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=ivf(nprobe)),
            {"nprobe": nprobe, "k_factor_rf": k_factor},
        )
        for nprobe in settings.nprobes
        for k_factor in settings.k_factors
    ]
    widest = max(settings.nprobes)
    alone = _Point("IVF-PQ alone", ivf(widest), {"nprobe": widest}, codes_only=True)
    return [
        _Candidate("Flat", True, "all", [_Point("Flat", None, {})]),
        _Candidate(f"IVF{nlist},PQ{settings.pq_m}np,RFlat", True, "codes", [*rescored, alone]),
        _Candidate(
            f"IVF{nlist},SQ8",
            False,
            "all",
            [_Point("IVF-SQ8", ivf(n), {"nprobe": n}) for n in settings.nprobes],
        ),
        _Candidate(
            "HNSW32",
            True,
            "all",
            [
                _Point("HNSW32", _FAISS.SearchParametersHNSW(efSearch=ef), {"efSearch": ef})
                for ef in settings.ef_searches
            ],
        ),
    ]


def run(settings: IndexBenchSettings, out: TextIO) -> IndexBenchReport:
    if settings.threads:
        faiss.omp_set_num_threads(settings.threads)
    started = time.perf_counter()
    corpus = np.concatenate(list(clustered_vectors(settings.size, settings, 0)))
    queries = np.concatenate(list(clustered_vectors(settings.queries, settings, 1)))
    warm_up = np.concatenate(list(clustered_vectors(settings.single_queries, settings, 2)))
    generate_s = time.perf_counter() - started
    nlist = nlist_for(settings.size, settings.train_size)
    train_rows = np.sort(
        np.random.default_rng(settings.seed).permutation(settings.size)[: settings.train_size]
    )
    out.write(
        f"{settings.size:,} x {settings.dim} clustered vectors ({settings.centres} clusters) "
        f"generated in {generate_s:.1f} s; IVF: {nlist} lists trained on {len(train_rows):,}\n"
    )
    out.flush()
    results: list[IndexTypeResult] = []
    truth: NDArray[np.int64] | None = None
    flat_qps = 0.0
    if settings.work_dir is not None:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.work_dir) as work:
        for candidate in _candidates(settings, nlist):
            index = faiss.index_factory(settings.dim, candidate.factory, faiss.METRIC_INNER_PRODUCT)
            t0 = time.perf_counter()
            if not index.is_trained:
                index.train(corpus[train_rows])
            fixed = len(faiss.serialize_index(index))  # centroids, codebooks, headers
            index.add(corpus)
            build_s = time.perf_counter() - t0
            path = Path(work) / "index.faiss"
            faiss.write_index(index, str(path))
            file_bytes = path.stat().st_size
            vectors_on_disk = settings.dim * 4.0 if candidate.in_ram == "codes" else 0.0
            ram_per_vector = (file_bytes - fixed) / settings.size - vectors_on_disk
            del index
            loaded_mib = _loaded_rss_mib(path, MMAP_FLAGS if candidate.mmap else 0)
            index = faiss.read_index(str(path), MMAP_FLAGS if candidate.mmap else 0)
            out.write(f"  {candidate.factory}: built in {build_s:.1f} s\n")
            for point in candidate.points:
                searched = _codes_part(index) if point.codes_only else index
                # Touch what the searches read (memory-mapped pages) with other queries.
                _search(searched, warm_up, RECALL_AT, point.parameters)
                p50, p99 = _latency(searched, queries[: settings.single_queries], point.parameters)
                t0 = time.perf_counter()
                _, found = _search(searched, queries, RECALL_AT, point.parameters)
                qps = len(queries) / (time.perf_counter() - t0)
                if truth is None:
                    truth, flat_qps = found, qps
                result = IndexTypeResult(
                    name=point.name,
                    factory=candidate.factory,
                    search_parameters=point.search_parameters,
                    build_s=build_s,
                    ram_bytes_per_vector=ram_per_vector,
                    fixed_ram_mib=fixed / 2**20,
                    disk_bytes_per_vector=0.0 if point.codes_only else vectors_on_disk,
                    loaded_ram_mib=loaded_mib,
                    mmap=candidate.mmap,
                    p50_ms=p50,
                    p99_ms=p99,
                    qps=qps,
                    recall_at_10=recall(found, truth),
                    speedup=qps / flat_qps,
                    wikipedia={},
                )
                result = replace(result, wikipedia=extrapolate(result, settings.size, nlist))
                results.append(result)
                out.write(
                    f"    {result.name} {_search_label(result)}: recall@10 "
                    f"{result.recall_at_10:.3f}, {qps:,.0f} q/s ({result.speedup:.1f} x Flat)\n"
                )
                out.flush()
            del index
            path.unlink()
    best, closest = against_target(results)
    report = IndexBenchReport(
        settings={k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        nlist=nlist,
        train_vectors=len(train_rows),
        generate_s=generate_s,
        results=results,
        best=best,
        closest=closest,
    )
    out.write(markdown(report))
    return report


def _codes_part(index: faiss.Index) -> faiss.Index:
    """The IVF-PQ index a re-scored index (IndexRefine) takes its candidates from."""
    refine: Any = faiss.downcast_index(index)
    return faiss.downcast_index(refine.base_index)


def against_target(
    results: list[IndexTypeResult],
) -> tuple[IndexTypeResult | None, IndexTypeResult | None]:
    """The fastest row meeting the whole target, and the fastest meeting its RAM and
    recall parts (the one to look at when nothing is fast enough)."""
    frugal = [
        r
        for r in results
        if r.ram_bytes_per_vector <= TARGET_RAM_BYTES_PER_VECTOR and r.recall_at_10 >= TARGET_RECALL
    ]
    fastest = max(frugal, key=lambda r: r.qps, default=None)
    met = fastest if fastest is not None and fastest.speedup >= TARGET_SPEEDUP else None
    return met, fastest


def _search_label(result: IndexTypeResult) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in result.search_parameters.items()) or "exact"


def extrapolate(result: IndexTypeResult, size: int, nlist: int) -> dict[str, float]:
    """The figures at WIKIPEDIA_PASSAGES passages. Memory and the time to add vectors grow
    linearly (HNSW's insertion by log n more; IVF training is on a sample of fixed size,
    counted as part of the linear build time, which overstates it a little). Search cost
    per query: Flat reads every vector (linear); IVF scans nprobe lists whose length grows
    as n / nlist with nlist chosen by nlist_for (about sqrt n), so as n / nlist; HNSW
    as log n. Recall is not extrapolated: it is the measured one at the same search
    parameters, which holds when the lists grow with the corpus (nprobe / nlist kept)."""
    ratio = WIKIPEDIA_PASSAGES / size
    if result.factory.startswith("IVF"):
        search = ratio * nlist / nlist_for(WIKIPEDIA_PASSAGES)
    elif result.factory.startswith("HNSW"):
        search = math.log(WIKIPEDIA_PASSAGES) / math.log(size)
    else:
        search = ratio
    build = ratio * (search if result.factory.startswith("HNSW") else 1.0)
    return {
        "passages": float(WIKIPEDIA_PASSAGES),
        "build_h": result.build_s * build / 3600,
        "ram_gib": result.fixed_ram_mib / 2**10
        + result.ram_bytes_per_vector * WIKIPEDIA_PASSAGES / 2**30,
        "disk_gib": result.disk_bytes_per_vector * WIKIPEDIA_PASSAGES / 2**30,
        "p50_ms": result.p50_ms * search,
        "qps": result.qps / search,
    }


def recall(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    hits = sum(
        len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)
    )
    return hits / truth.size


def _search(
    index: faiss.Index, queries: NDArray[np.float32], k: int, parameters: Any
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    if parameters is None:
        return index.search(queries, k)
    return index.search(queries, k, params=parameters)


def _latency(
    index: faiss.Index, queries: NDArray[np.float32], parameters: Any
) -> tuple[float, float]:
    times = []
    for row in range(len(queries)):
        t0 = time.perf_counter()
        _search(index, queries[row : row + 1], RECALL_AT, parameters)
        times.append((time.perf_counter() - t0) * 1000)
    if len(times) < 2:
        return times[0], times[0]
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return cuts[49], cuts[98]


_LOAD_SCRIPT = """
import sys, faiss
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1])
before = rss()
index = faiss.read_index(sys.argv[1], int(sys.argv[2]))
print((rss() - before) * {page})
"""


def _loaded_rss_mib(path: Path, flags: int) -> float:
    """Resident memory a fresh Python process gains by reading ``path`` with ``flags``."""
    script = _LOAD_SCRIPT.format(page=os.sysconf("SC_PAGE_SIZE"))
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(flags)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout.split()[-1]) / 2**20


def markdown(report: IndexBenchReport) -> str:
    s = report.settings
    lines = [
        "",
        f"{s['size']:,} x {s['dim']} clustered vectors, {len(report.results)} rows "
        f"({len({r.factory for r in report.results})} indexes at their search settings), "
        f"{s['queries']} queries batched, {s['single_queries']} one at a time, "
        f"IVF {report.nlist} lists trained on {report.train_vectors:,} vectors.",
        "",
        "| index | factory | search | build s | RAM B/vec | fixed MiB | mmap disk B/vec "
        "| loaded RSS MiB "
        "| p50 ms | p99 ms | q/s batched | x Flat | recall@10 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        lines.append(
            f"| {r.name} | `{r.factory}` | {_search_label(r)} | {r.build_s:.1f} "
            f"| {r.ram_bytes_per_vector:,.0f} | {r.fixed_ram_mib:,.1f} "
            f"| {r.disk_bytes_per_vector:,.0f} "
            f"| {r.loaded_ram_mib:,.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.qps:,.0f} "
            f"| {r.speedup:.1f} | {r.recall_at_10:.3f} |"
        )
    lines += [
        "",
        f"Extrapolated to {WIKIPEDIA_PASSAGES:,} passages (memory and build linear, HNSW "
        "build n log n; search per query: Flat linear, IVF as n / nlist with nlist about "
        "4 sqrt n, HNSW log n; recall as measured):",
        "",
        "| index | search | build h | RAM GiB | mmap disk GiB | p50 ms | q/s batched |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        w = r.wikipedia
        lines.append(
            f"| {r.name} | {_search_label(r)} | {w['build_h']:.2f} | {w['ram_gib']:.1f} "
            f"| {w['disk_gib']:.1f} "
            f"| {w['p50_ms']:.2f} | {w['qps']:,.0f} |"
        )
    lines += ["", verdict(report)]
    return "\n".join(lines) + "\n"


def verdict(report: IndexBenchReport) -> str:
    target = (
        f"at most {TARGET_RAM_BYTES_PER_VECTOR} B a vector in RAM, recall@10 at least "
        f"{TARGET_RECALL}, at least {TARGET_SPEEDUP:g} x Flat's batched queries per second"
    )
    if report.best is not None:
        r = report.best
        return (
            f"Target ({target}): met by {r.name} `{r.factory}` at {_search_label(r)}: "
            f"{r.ram_bytes_per_vector:,.0f} B a vector, recall@10 {r.recall_at_10:.3f}, "
            f"{r.speedup:.1f} x Flat."
        )
    if report.closest is not None:
        r = report.closest
        return (
            f"Target ({target}): NOT met. Fastest within the RAM and recall parts: {r.name} "
            f"`{r.factory}` at {_search_label(r)}, {r.speedup:.1f} x Flat."
        )
    return f"Target ({target}): NOT met; no row meets its RAM and recall parts."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = IndexBenchSettings()
    parser.add_argument("--size", type=int, default=defaults.size, help="vectors indexed")
    parser.add_argument("--dim", type=int, default=defaults.dim, help="vector length")
    parser.add_argument(
        "--queries", type=int, default=defaults.queries, help="queries of the batched search"
    )
    parser.add_argument(
        "--single-queries",
        type=int,
        default=defaults.single_queries,
        help="queries searched one at a time (latency percentiles)",
    )
    parser.add_argument(
        "--nprobe",
        type=_int_list,
        default=defaults.nprobes,
        help="IVF lists probed, comma-separated: each is a row (default %(default)s)",
    )
    parser.add_argument(
        "--k-factor",
        type=_int_list,
        default=defaults.k_factors,
        help="IVF-PQ candidates re-scored, as multiples of k, comma-separated "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--ef-search",
        type=_int_list,
        default=defaults.ef_searches,
        help="HNSW efSearch values, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--train-size",
        type=int,
        default=defaults.train_size,
        help="most vectors an IVF index is trained on",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="FAISS OpenMP threads (0: FAISS's choice)"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--work-dir", type=Path, help="folder for the index files (a temp dir)")
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds on tiny data (a smoke test)"
    )


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want integers separated by commas") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: want integers of at least 1")
    return values


def main(args: argparse.Namespace) -> int:
    if args.quick:
        settings = replace(QUICK, work_dir=args.work_dir)
    else:
        settings = IndexBenchSettings(
            size=args.size,
            dim=args.dim,
            queries=args.queries,
            single_queries=args.single_queries,
            nprobes=args.nprobe,
            k_factors=args.k_factor,
            ef_searches=args.ef_search,
            train_size=args.train_size,
            threads=args.threads,
            work_dir=args.work_dir,
        )
    report = run(settings, sys.stdout)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
