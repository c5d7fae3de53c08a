"""Per-request FAISS search settings: how hard one search looks (recall against speed)."""

from __future__ import annotations

from typing import Any

import faiss
from pydantic import ConfigDict, Field

from deployments.config import StrictConfig

_FAISS: Any = faiss
"""FAISS's search-parameter classes take keyword arguments its type stubs do not declare."""


class SearchParameters(StrictConfig):
    """Overrides, for one search, of the settings the Retriever's search_parameters set
    at load; a field the index type has no use for is ignored (nprobe on HNSW)."""

    model_config = ConfigDict(frozen=True)

    nprobe: int | None = Field(
        None, ge=1, description="IVF: inverted lists probed per query (at most nlist)."
    )
    ef_search: int | None = Field(
        None, ge=1, description="HNSW: candidates kept while walking the graph."
    )
    k_factor: float | None = Field(
        None,
        ge=1,
        description="Re-scored index (RFlat): candidates re-scored against the full vectors, "
        "as a multiple of top_k.",
    )

    @classmethod
    def given(
        cls, nprobe: int | None = None, ef_search: int | None = None
    ) -> SearchParameters | None:
        """The settings a request asks for; None when it asks for none."""
        if nprobe is None and ef_search is None:
            return None
        return cls(nprobe=nprobe, ef_search=ef_search)


def faiss_parameters(
    index: faiss.Index, wanted: SearchParameters, selector: object | None = None
) -> Any:
    """FAISS's SearchParameters object of ``index``'s kind carrying ``wanted`` (the
    index's own setting where ``wanted`` leaves one unset) and ``selector``; None when
    FAISS takes no parameters for this index type."""
    if isinstance(index, faiss.IndexRefine):
        base = faiss_parameters(faiss.downcast_index(index.base_index), wanted, selector)
        k_factor = wanted.k_factor if wanted.k_factor is not None else index.k_factor
        return _FAISS.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=base)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        nprobe = wanted.nprobe if wanted.nprobe is not None else ivf.nprobe
        return _FAISS.SearchParametersIVF(sel=selector, nprobe=min(nprobe, ivf.nlist))
    if isinstance(index, faiss.IndexHNSW):
        ef = wanted.ef_search if wanted.ef_search is not None else index.hnsw.efSearch
        return _FAISS.SearchParametersHNSW(sel=selector, efSearch=ef)
    if isinstance(index, faiss.IndexFlat):
        return _FAISS.SearchParameters(sel=selector)
    return None
