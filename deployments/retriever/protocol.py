"""What every retriever engine provides."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from deployments.index.format import IndexManifest
from deployments.passage import Hit
from deployments.retriever.filters import MetadataFilter
from deployments.retriever.search_parameters import SearchParameters


class RetrieverEngine(Protocol):
    """Finds the passages of one index version nearest query vectors."""

    @property
    def manifest(self) -> IndexManifest: ...

    @property
    def version_dir(self) -> Path: ...

    @property
    def dimension(self) -> int: ...

    def search(
        self,
        queries: NDArray[np.float32],
        top_k: int,
        where: MetadataFilter | None = None,
        params: SearchParameters | None = None,
    ) -> list[list[Hit]]:
        """The ``top_k`` passages nearest each query row, best first; with ``where``,
        only passages whose metadata match it (``top_k`` of them when that many do);
        ``params`` overrides the index's search settings for this call."""
        ...
