"""The index directory: a versioned, checksummed, atomically published artifact.

Layout of an index root::

    <root>/current              name of the version being served (replaced atomically)
    <root>/versions/<version>/  one complete, immutable version:
        manifest.json           format version, embedder identity, FAISS factory, counts, checksums
        index.faiss             the FAISS index (row i is passage i)
        passages.jsonl          one JSON object per passage
        passages.offsets.npy    byte offset of each line, plus the end (random access)
        lexical_stats.npz       n-gram document frequencies (built-in embedder and reranker)

A version is written under ``<root>/.building-*`` and renamed into ``versions/``
only once every file is complete and synced; ``current`` is then replaced with
``os.replace``. A build killed at any moment leaves the served version as it
was, and a new version appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field

from deployments.config import StrictConfig

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
FAISS_FILE = "index.faiss"
PASSAGES_FILE = "passages.jsonl"
OFFSETS_FILE = "passages.offsets.npy"
CURRENT_FILE = "current"
VERSIONS_DIR = "versions"
BUILDING_PREFIX = ".building-"


class EmbedderIdentity(StrictConfig):
    """Everything that decides which vector a text gets.

    Recorded in an index manifest; a server refuses an index whose identity
    differs from that of the embedder it runs.
    """

    backend: str = Field(description="Engine family, e.g. 'hashing' or 'sentence-transformers'.")
    model: str = Field(description="Model name or path, or the built-in scheme's name.")
    dimension: int = Field(description="Length of every vector.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Other settings that change vectors (prefixes, ...)."
    )

    def differences(self, other: EmbedderIdentity) -> list[str]:
        """Human-readable list of fields where ``other`` differs from this one."""
        mine, theirs = self.model_dump(), other.model_dump()
        return [
            f"{key}: {mine[key]!r} != {theirs[key]!r}" for key in mine if mine[key] != theirs[key]
        ]


class InvalidIndexError(RuntimeError):
    """An index directory that is missing, incomplete, corrupt or incompatible."""


class FileEntry(StrictConfig):
    sha256: str = Field(description="Hex SHA-256 of the file's bytes.")
    bytes: int = Field(description="File size.")


class ChunkingSettings(StrictConfig):
    max_chars: int = Field(description="Longest chunk, in characters.")
    overlap_chars: int = Field(description="Characters of whole sentences repeated between chunks.")


class IndexManifest(StrictConfig):
    """``manifest.json`` of one index version."""

    format_version: int = Field(description="Layout version of the index directory.")
    version: str = Field(description="Name of this version (its directory under versions/).")
    created_at: str = Field(description="UTC time the build finished, ISO 8601.")
    embedder: EmbedderIdentity = Field(description="The embedder that made the vectors.")
    faiss_factory: str = Field(description="FAISS index_factory string, e.g. 'Flat' or 'HNSW32'.")
    metric: str = Field("inner_product", description="FAISS metric; vectors are unit length.")
    num_passages: int = Field(description="Rows in the FAISS index and the passage store.")
    num_documents: int = Field(description="Distinct source documents (before chunking).")
    chunking: ChunkingSettings = Field(description="How documents were cut into passages.")
    sources: list[str] = Field(description="Input files the passages came from.")
    files: dict[str, FileEntry] = Field(description="Checksum and size of every data file.")


def resolve_version_dir(path: str | os.PathLike[str], version: str | None = None) -> Path:
    """The directory of the version to serve.

    ``path`` is an index root (its ``current`` version, or ``version`` when
    given) or a version directory itself.
    """
    root = Path(path).expanduser().resolve()
    if version is not None:
        candidate = root / VERSIONS_DIR / version
        if not (candidate / MANIFEST_FILE).is_file():
            known = ", ".join(list_versions(root)) or "none"
            raise InvalidIndexError(f"index {root} has no version {version!r} (versions: {known})")
        return candidate
    if (root / MANIFEST_FILE).is_file():
        return root
    pointer = root / CURRENT_FILE
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        candidate = root / VERSIONS_DIR / name
        if (candidate / MANIFEST_FILE).is_file():
            return candidate
        raise InvalidIndexError(f"{pointer} names version {name!r}, which is missing or incomplete")
    raise InvalidIndexError(
        f"no index at {root}: build one with `jarag index build <corpus files> --out {root}`"
    )


def list_versions(root: Path) -> list[str]:
    versions = root / VERSIONS_DIR
    if not versions.is_dir():
        return []
    return sorted(p.name for p in versions.iterdir() if (p / MANIFEST_FILE).is_file())


def read_manifest(version_dir: Path, verify: bool = True) -> IndexManifest:
    """Read the manifest; with ``verify``, check every file's size and checksum."""
    path = version_dir / MANIFEST_FILE
    try:
        manifest = IndexManifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as error:
        raise InvalidIndexError(f"{path} is missing: not an index version directory") from error
    except ValueError as error:
        raise InvalidIndexError(f"{path} is not a valid index manifest: {error}") from error
    if manifest.format_version != FORMAT_VERSION:
        raise InvalidIndexError(
            f"{version_dir} has index format {manifest.format_version}; this server reads "
            f"format {FORMAT_VERSION}: rebuild it with `jarag index build`"
        )
    for name, entry in manifest.files.items():
        file = version_dir / name
        if not file.is_file():
            raise InvalidIndexError(f"{file} is missing: the index is incomplete")
        if file.stat().st_size != entry.bytes:
            raise InvalidIndexError(
                f"{file} has {file.stat().st_size} bytes, manifest says {entry.bytes}"
            )
        if verify and sha256_file(file) != entry.sha256:
            raise InvalidIndexError(f"{file} does not match its checksum: the index is corrupt")
    return manifest


def check_embedder(manifest: IndexManifest, serving: EmbedderIdentity, where: Path) -> None:
    """Refuse an index made by another embedder than the one configured."""
    differences = manifest.embedder.differences(serving)
    if differences:
        raise InvalidIndexError(
            f"index {where} was built with a different embedder than the one configured "
            f"({'; '.join(differences)}). Rebuild the index with this embedder or configure "
            "the one it was built with."
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version_name() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def start_version(root: Path) -> Path:
    """A fresh private directory to write a version into; removes stale ones."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{BUILDING_PREFIX}*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    building = root / f"{BUILDING_PREFIX}{new_version_name()}-{os.getpid()}"
    building.mkdir()
    return building


def finish_manifest(building: Path, manifest: IndexManifest) -> IndexManifest:
    """Checksum the data files and write the manifest last."""
    files = {
        p.name: FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size)
        for p in sorted(building.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }
    manifest = manifest.model_copy(update={"files": files})
    _write_synced(building / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode("utf-8"))
    return manifest


def publish(building: Path, root: Path, version: str, make_current: bool = True) -> Path:
    """Move a finished version into place and, by default, make it the served one."""
    for file in building.iterdir():
        _fsync_path(file)
    versions = root / VERSIONS_DIR
    versions.mkdir(exist_ok=True)
    target = versions / version
    os.rename(building, target)
    _fsync_path(versions)
    if make_current:
        set_current(root, version)
    return target


def set_current(root: Path, version: str) -> None:
    """Atomically point ``<root>/current`` at ``version``."""
    if not (root / VERSIONS_DIR / version / MANIFEST_FILE).is_file():
        raise InvalidIndexError(f"{root} has no complete version {version!r}")
    temporary = root / f"{CURRENT_FILE}.{os.getpid()}.tmp"
    _write_synced(temporary, f"{version}\n".encode())
    os.replace(temporary, root / CURRENT_FILE)
    _fsync_path(root)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
