"""Which FAISS index a corpus gets: a rule from its size and a RAM budget.

The rule, first match wins (``n`` vectors of ``d`` float32 dimensions):

1. ``Flat`` (exact) when ``n <= EXACT_MAX_VECTORS`` and ``4 d n`` bytes fit the budget:
   nothing to tune, and one query scans at most about 1 GiB at 1,024 dimensions.
2. ``HNSW32`` when its ``4 d + 8 x 32`` bytes per vector (the vectors and the graph's
   links) fit: the fastest single queries, at the highest memory.
3. ``IVF{nlist},SQ8`` when its ``d + 8`` bytes per vector (8-bit codes and ids) fit:
   recall near exact at a quarter of Flat's memory.
4. ``IVF{nlist},PQ{m}np,RFlat`` otherwise (``PQ{m}x4np`` below 9,984 training
   vectors): ``m + 8`` bytes per vector in RAM (PQ codes and ids); the full vectors
   stay in the same file, memory-mapped by the Retriever (faiss.IO_FLAG_MMAP_IFC), and
   only the candidates (k_factor x top_k) are read back from them to re-score exactly.

``nlist`` is the power of two nearest 4 sqrt(n), at most train_size / 39 (FAISS's k-means
wants 39 training vectors per list). The IVF is trained on a random sample of
``train_size`` vectors (BuildSettings.train_size, 100,000 by default; 320,000 trains
8,192 lists, Wikipedia's nlist).
"""

from __future__ import annotations

import math

EXACT_MAX_VECTORS = 250_000
"""Largest corpus given exact search by the rule."""
HNSW_LINK_BYTES = 8 * 32
"""Approximate graph bytes per vector of HNSW32 (32 links of 4 bytes on level 0 and
the upper levels' share, 2 x 32)."""
PQ_SUBQUANTIZERS = (64, 48, 32, 16, 8, 4, 2, 1)
"""The first of these that divides the dimension is the PQ code length in bytes."""
TRAINING_POINTS_PER_LIST = 39
AUTO = "auto"
"""The build setting that asks for the rule."""


def nlist_for(size: int, train_size: int | None = None) -> int:
    """Inverted lists for ``size`` vectors trained on ``train_size`` of them (default:
    all): the power of two nearest 4 sqrt(size), at most the training vectors / 39,
    at least 1."""
    points = min(size, train_size if train_size is not None else size)
    power = 2 ** round(math.log2(max(4 * math.sqrt(size), 1)))
    while power > 1 and power * TRAINING_POINTS_PER_LIST > points:
        power //= 2
    return int(power)


def pq_subquantizers(dimension: int) -> int:
    return next(m for m in PQ_SUBQUANTIZERS if dimension % m == 0)


def choose_factory(size: int, dimension: int, ram_budget_bytes: float, train_size: int) -> str:
    """The index_factory string the rule above gives ``size`` vectors of ``dimension``."""
    if size <= EXACT_MAX_VECTORS and 4 * dimension * size <= ram_budget_bytes:
        return "Flat"
    if (4 * dimension + HNSW_LINK_BYTES) * size <= ram_budget_bytes:
        return "HNSW32"
    nlist = nlist_for(size, train_size)
    if (dimension + 8) * size <= ram_budget_bytes:
        return f"IVF{nlist},SQ8"
    points = min(size, train_size)
    # 8-bit codes want 39 x 256 training vectors; a smaller corpus gets 4-bit ones.
    bits = "" if points >= 256 * TRAINING_POINTS_PER_LIST else "x4"
    return f"IVF{nlist},PQ{pq_subquantizers(dimension)}{bits}np,RFlat"


def is_approximate(factory: str) -> bool:
    """Whether an index of ``factory`` may miss exact neighbours (IVF, HNSW, PQ, LSH)."""
    return any(kind in factory for kind in ("IVF", "HNSW", "PQ", "LSH"))
