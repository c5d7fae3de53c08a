"""The passages of an index version: written once as JSON Lines with their byte
offsets, read back by row through a memory map.

A line holds ``id``, ``doc_id``, ``title``, ``text``, ``url`` and, when the
passage has any, ``metadata`` (a flat JSON object); a line without it reads as
empty metadata, so versions written before it existed are read unchanged."""

from __future__ import annotations

import functools
import json
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from deployments.index.format import OFFSETS_FILE, PASSAGES_FILE
from deployments.passage import Passage

PASSAGE_CACHE_SIZE = 4096
"""Passages a store keeps decoded (a few MB): searches keep finding the same ones."""


class PassageStore:
    """Random access to the passages of one version, memory-mapped; the passages
    looked up most recently stay decoded (``PASSAGE_CACHE_SIZE``)."""

    def __init__(self, version_dir: Path) -> None:
        self._offsets = np.load(version_dir / OFFSETS_FILE, mmap_mode="r")
        self._file = (version_dir / PASSAGES_FILE).open("rb")
        size = os.fstat(self._file.fileno()).st_size
        self._data = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._recent = functools.lru_cache(maxsize=PASSAGE_CACHE_SIZE)(self._read)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, row: int) -> Passage:
        if not 0 <= row < len(self):
            raise IndexError(f"passage row {row} out of range 0..{len(self) - 1}")
        return self._recent(row)

    def _read(self, row: int) -> Passage:
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        record = json.loads(self._data[start:end])
        return Passage(
            id=record["id"],
            doc_id=record["doc_id"],
            title=record["title"],
            text=record["text"],
            url=record.get("url"),
            # Versions written before passages had metadata have no such key.
            metadata=record.get("metadata") or {},
        )

    def __iter__(self) -> Iterator[Passage]:
        # A whole pass decodes each passage once: no use keeping them.
        for row in range(len(self)):
            yield self._read(row)

    def close(self) -> None:
        self._recent.cache_clear()
        if isinstance(self._data, mmap.mmap):
            self._data.close()
        self._file.close()


class PassageStoreWriter:
    """Appends passages to ``passages.jsonl`` and records their offsets."""

    def __init__(self, version_dir: Path) -> None:
        self._dir = version_dir
        self._file: IO[bytes] = (version_dir / PASSAGES_FILE).open("wb")
        self._offsets: list[int] = [0]

    def add(self, passage: Passage) -> None:
        record: dict[str, object] = {
            "id": passage.id,
            "doc_id": passage.doc_id,
            "title": passage.title,
            "text": passage.text,
            "url": passage.url,
        }
        if passage.metadata:
            record["metadata"] = passage.metadata
        line = json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
        self._file.write(line)
        self._offsets.append(self._offsets[-1] + len(line))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def close(self) -> None:
        _sync_close(self._file)
        with (self._dir / OFFSETS_FILE).open("wb") as f:
            np.save(f, np.asarray(self._offsets, dtype=np.int64))
            f.flush()
            os.fsync(f.fileno())

    def __enter__(self) -> PassageStoreWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._file.closed:
            self._file.close()


def _sync_close(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
