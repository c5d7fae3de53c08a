"""Reading documents and questions from corpus files, a record at a time.

Formats, told by the file name (a folder is read file by file, sorted, recursively,
leaving out names that start with ``.`` or ``_`` and files of no known format):

- JSON Lines (``.jsonl``, ``.ndjson``, or ``.json`` holding one object a line), plain
  or compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``): one document a line with
  ``text`` and optionally ``id``, ``title`` and ``url``. This is also the layout of
  the singletongue/wikipedia-utils passages (``id``, ``pageid``, ``revid``,
  ``title``, ``section``, ``text``).
- Parquet (``.parquet``, a file or a folder of shards) with the same columns, read
  a batch of rows at a time.
- SQuAD-format JSON (``.json``, plain or compressed): paragraphs as documents, with
  their questions.
- Plain text (``.txt``) and Markdown (``.md``): one document a file; the title is
  a Markdown file's front-matter ``title`` or first heading, else the file name.

Every other field of a record becomes the document's metadata, with ``source``
(the file it came from) added; a list or an object is kept as JSON text, or left
out with a warning when longer than ``STRUCTURED_METADATA_CHARS`` (precomputed
vectors). A record with a ``pageid`` and no ``url`` gets its Japanese Wikipedia
URL. A malformed record is an error naming its file and line (or row), or, when
reading with a :class:`CorpusProblems`, a logged warning: it is skipped and counted.
"""

from __future__ import annotations

import bz2
import contextlib
import datetime
import functools
import gzip
import json
import logging
import lzma
import math
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import yaml

from deployments.extras import require
from deployments.passage import Metadata, MetadataValue, Passage
from deployments.text import chunk_text

logger = logging.getLogger(__name__)

SQUAD_TITLE_SEPARATOR = " [SEP] "
WIKIPEDIA_URL = "https://ja.wikipedia.org/wiki/"
MAPPED_FIELDS = frozenset({"id", "title", "text", "url"})
"""Record fields that make the document itself; the others become its metadata."""
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zstd")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt",)
MARKDOWN_SUFFIXES = (".md", ".markdown")
PARQUET_SUFFIX = ".parquet"
PARQUET_BATCH_ROWS = 4096
STRUCTURED_METADATA_CHARS = 1000
"""Longest list or object field kept in metadata (as JSON text); longer ones, such as
precomputed vectors beside the text, would swell every passage."""
LOGGED_PROBLEMS = 20
"""Skipped records logged one by one; later ones are only counted."""
_READ_BLOCK = 1 << 20
_BOM = "\ufeff".encode()
_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.DOTALL)


class CorpusError(ValueError):
    """An input file that cannot be read as documents or questions."""


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    title: str
    text: str
    url: str | None = None
    metadata: Metadata = field(default_factory=dict)
    """Every other field of the record, and ``source``: the file it came from."""


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    doc_id: str
    """Id of the document (SQuAD paragraph) that answers it."""


class CorpusProblems:
    """Malformed records skipped while reading: each is logged as a warning (the
    first ``LOGGED_PROBLEMS``) and counted."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []
        """The first ``LOGGED_PROBLEMS`` messages, each naming its file and line."""

    def skip(self, message: str) -> None:
        self.count += 1
        if self.count <= LOGGED_PROBLEMS:
            self.examples.append(message)
            logger.warning("skipped %s", message)
        elif self.count == LOGGED_PROBLEMS + 1:
            logger.warning("more malformed records: they are skipped and counted, not logged")


class _ByteStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Malformed(Exception):
    """One record that cannot be read; the reader reports it with its place."""


def read_documents(path: Path, problems: CorpusProblems | None = None) -> Iterator[Document]:
    """Documents of one corpus file or folder (see the module's formats).

    Without ``problems`` a malformed record raises :class:`CorpusError`; with it, the
    record is skipped and counted there.
    """
    return read_corpus([path], problems)


def read_corpus(
    sources: Sequence[Path], problems: CorpusProblems | None = None
) -> Iterator[Document]:
    """Documents of every source in turn; a document id must be unique across them all."""
    reader = _Reader(problems)
    for source in sources:
        if source.is_dir():
            yield from reader.folder(source)
        else:
            yield from reader.file(source, source.name)


def read_questions(path: Path) -> Iterator[Question]:
    """Questions of a SQuAD-format file, each with the id of its gold paragraph; or of a
    JSON Lines file of ``{question, answer (or answers), doc_id}`` about documents indexed
    from elsewhere (the demo's questions.jsonl)."""
    kind = _kind(path)
    if kind == "jsonl":
        yield from _read_question_lines(path)
        return
    if kind != "json":
        raise CorpusError(f"{path}: questions are read from SQuAD-format .json or .jsonl files")
    for _, questions in _read_squad(path):
        yield from questions


def _read_question_lines(path: Path) -> Iterator[Question]:
    with _open_binary(path) as stream:
        for number, line in enumerate(_lines(stream), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                answers = record["answers"] if "answers" in record else [record["answer"]]
                yield Question(
                    id=str(record.get("id", f"{_stem(path)}:{number}")),
                    question=str(record["question"]),
                    answers=tuple(str(a) for a in answers),
                    doc_id=str(record["doc_id"]),
                )
            except (KeyError, TypeError, ValueError) as error:
                raise CorpusError(f"{path}:{number}: not a question ({error})") from error


def split_documents(
    documents: Iterable[Document], max_chars: int, overlap_chars: int
) -> Iterator[Passage]:
    """Passages of at most ``max_chars`` characters cut at sentence boundaries.

    A document that fits (a corpus of ready-made passages) stays one passage with
    the document's id; the chunks of a longer one share its title, url and metadata.
    """
    for document in documents:
        chunks = chunk_text(document.text, max_chars, overlap_chars)
        for number, chunk in enumerate(chunks):
            passage_id = document.id if len(chunks) == 1 else f"{document.id}#{number}"
            yield Passage(
                passage_id, document.id, document.title, chunk, document.url, document.metadata
            )


def metadata_value(value: Any) -> MetadataValue:
    """A corpus field as a metadata value: scalars as they are, dates in ISO 8601,
    non-finite numbers as null, lists and objects as compact JSON text."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, ensure_ascii=False, default=str)


@functools.lru_cache(maxsize=1024)  # the passages of one article come together
def wikipedia_url(title: str) -> str:
    """The Japanese Wikipedia address of the article ``title``."""
    return WIKIPEDIA_URL + quote(title.replace(" ", "_"))


def _kind(path: Path) -> str | None:
    """The format of a corpus file from its name (a compression suffix aside)."""
    name = path.name.lower()
    compressed = name.endswith(COMPRESSIONS)
    if compressed:
        name = name.rsplit(".", 1)[0]
    if name.endswith(JSON_LINES_SUFFIXES):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if compressed:
        return None
    if name.endswith(PARQUET_SUFFIX):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    if name.endswith(MARKDOWN_SUFFIXES):
        return "markdown"
    return None


def _stem(path: Path) -> str:
    """The file name without its format and compression suffixes."""
    name = path.name
    if name.lower().endswith(COMPRESSIONS):
        name = name.rsplit(".", 1)[0]
    return name.rsplit(".", 1)[0] if "." in name else name


class _Reader:
    """One read of a corpus: where problems go, and the document ids seen so far."""

    def __init__(self, problems: CorpusProblems | None) -> None:
        self._problems = problems
        self._seen: set[str] = set()
        self._left_out_fields: set[str] = set()

    def _left_out(self, key: str, source: str) -> None:
        if key not in self._left_out_fields:
            self._left_out_fields.add(key)
            logger.warning(
                "%s: field %r left out of the metadata where its value (a list or an object, "
                "such as precomputed vectors) is longer than %d characters as JSON",
                source,
                key,
                STRUCTURED_METADATA_CHARS,
            )

    def problem(self, where: str, message: str) -> None:
        if self._problems is None:
            raise CorpusError(f"{where}: {message}")
        self._problems.skip(f"{where}: {message}")

    def folder(self, folder: Path) -> Iterator[Document]:
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
        )
        readable = [p for p in files if _kind(p) is not None]
        if not readable:
            raise CorpusError(
                f"{folder}: no corpus files in this folder (.jsonl, .json, .parquet, .txt, "
                ".md, the JSON ones optionally .gz/.bz2/.xz/.zst)"
            )
        for ignored in sorted(set(files) - set(readable)):
            logger.info("%s: not a corpus file, ignored", ignored)
        for path in readable:
            yield from self.file(path, path.relative_to(folder).as_posix())

    def file(self, path: Path, source: str) -> Iterator[Document]:
        kind = _kind(path)
        if kind == "json":
            kind = "jsonl" if _holds_json_lines(path) else "squad"
        if kind == "jsonl":
            yield from self._json_lines(path, source)
        elif kind == "squad":
            for document, _ in _read_squad(path):
                if document.id in self._seen:
                    raise CorpusError(f"{path}: duplicate id {document.id!r}")
                self._seen.add(document.id)
                yield document
        elif kind == "parquet":
            yield from self._parquet(path, source)
        elif kind in ("text", "markdown"):
            text_document = self._text_file(path, source, markdown=kind == "markdown")
            if text_document is not None:
                yield text_document
        else:
            raise CorpusError(
                f"{path}: expected a .jsonl passage file (plain, .gz, .bz2, .xz or .zst), "
                "a SQuAD-format .json file, a .parquet file, a .txt or .md file, or a folder "
                "of them"
            )

    def _json_lines(self, path: Path, source: str) -> Iterator[Document]:
        number = 0
        with _open_binary(path) as stream:
            try:
                for number, raw in enumerate(_lines(stream), start=1):
                    if not raw.strip():
                        continue
                    where = f"{path}:{number}"
                    try:
                        record = _json_object(raw)
                        document = self._record(record, source, f"{_stem(path)}:{number}")
                    except _Malformed as error:
                        self.problem(where, str(error))
                        continue
                    yield document
            except _decompression_errors() as error:
                raise CorpusError(f"{path}: cannot be read after line {number}: {error}") from error

    def _parquet(self, path: Path, source: str) -> Iterator[Document]:
        parquet = require("pyarrow.parquet", "corpus", "Reading Parquet corpus files")
        try:
            file = parquet.ParquetFile(path)
        except Exception as error:  # pyarrow raises its own ArrowInvalid, OSError, ...
            raise CorpusError(f"{path}: not a readable Parquet file ({error})") from error
        with contextlib.closing(file):
            columns = file.schema_arrow.names
            if "text" not in columns:
                raise CorpusError(f"{path}: no 'text' column (columns: {', '.join(columns)})")
            row = 0
            for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for record in batch.to_pylist():
                    row += 1
                    try:
                        document = self._record(record, source, f"{_stem(path)}:{row}")
                    except _Malformed as error:
                        self.problem(f"{path} row {row}", str(error))
                        continue
                    yield document

    def _record(self, record: dict[str, Any], source: str, default_id: str) -> Document:
        text, title = record.get("text"), record.get("title")
        if not isinstance(text, str) or not text.strip():
            raise _Malformed("'text' must be a non-empty string")
        if title is None:
            title = ""
        if not isinstance(title, str):
            raise _Malformed("'title' must be a string")
        given_id = record.get("id")
        doc_id = default_id if given_id is None or given_id == "" else str(given_id)
        if doc_id in self._seen:
            raise _Malformed(f"duplicate id {doc_id!r}")
        url = record.get("url")
        title = title.strip()
        if url:
            url = str(url)
        elif record.get("pageid") is not None and title:
            url = wikipedia_url(title)
        else:
            url = None
        metadata: Metadata = {"source": source}
        for key, value in record.items():
            if key in MAPPED_FIELDS:
                continue
            kept = metadata_value(value)
            if (
                isinstance(value, (list, tuple, dict))
                and isinstance(kept, str)
                and len(kept) > STRUCTURED_METADATA_CHARS
            ):
                self._left_out(key, source)
                continue
            metadata[key] = kept
        self._seen.add(doc_id)
        return Document(doc_id, title, text.strip(), url, metadata)

    def _text_file(self, path: Path, source: str, markdown: bool) -> Document | None:
        try:
            content = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as error:
            self.problem(str(path), f"not UTF-8 text ({error.reason} at byte {error.start})")
            return None
        metadata: Metadata = {"source": source}
        title: str | None = None
        url: str | None = None
        if markdown:
            try:
                front, content = _front_matter(content)
            except _Malformed as error:
                self.problem(f"{path}:1", str(error))
                return None
            given_title, given_url = front.pop("title", None), front.pop("url", None)
            title = str(given_title).strip() if given_title else None
            url = str(given_url) if given_url else None
            metadata.update((str(k), metadata_value(v)) for k, v in front.items())
            heading = _HEADING.search(content)
            if heading is not None and title is None:
                title = heading.group(1).strip()
                content = content[: heading.start()] + content[heading.end() :]
            content = _HEADING.sub(r"\1", content)
        text = content.strip()
        if not text:
            self.problem(str(path), "no text")
            return None
        if source in self._seen:
            self.problem(str(path), f"duplicate id {source!r}")
            return None
        self._seen.add(source)
        return Document(source, title or path.stem, text, url, metadata)


def _front_matter(content: str) -> tuple[dict[str, Any], str]:
    """A Markdown file's YAML front matter (between ``---`` lines) and the rest."""
    match = _FRONT_MATTER.match(content)
    if match is None:
        return {}, content
    try:
        front = yaml.safe_load(match.group(1) or "")
    except yaml.YAMLError as error:
        raise _Malformed(f"front matter is not valid YAML ({error})") from error
    if front is None:
        front = {}
    if not isinstance(front, dict):
        raise _Malformed("front matter must be a YAML mapping")
    return front, content[match.end() :]


def _json_object(raw: bytes) -> dict[str, Any]:
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise _Malformed(f"not UTF-8 ({error.reason} at byte {error.start})") from error
    except json.JSONDecodeError as error:
        raise _Malformed(f"not valid JSON ({error.msg})") from error
    if not isinstance(record, dict):
        raise _Malformed("expected a JSON object")
    return record


@contextlib.contextmanager
def _open_binary(path: Path) -> Iterator[_ByteStream]:
    """The bytes of a corpus file, decompressed as its name says, as a stream."""
    name = path.name.lower()
    with contextlib.ExitStack() as stack:
        stream: _ByteStream
        if name.endswith(".gz"):
            stream = stack.enter_context(gzip.open(path, "rb"))
        elif name.endswith(".bz2"):
            stream = stack.enter_context(bz2.open(path, "rb"))
        elif name.endswith(".xz"):
            stream = stack.enter_context(lzma.open(path, "rb"))
        elif name.endswith((".zst", ".zstd")):
            zstandard = require("zstandard", "corpus", "Reading Zstandard-compressed corpus files")
            raw = stack.enter_context(path.open("rb"))
            decompressor = zstandard.ZstdDecompressor()
            stream = stack.enter_context(decompressor.stream_reader(raw, read_across_frames=True))
        else:
            stream = stack.enter_context(path.open("rb"))
        yield stream


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged (or truncated) compressed file raises."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, lzma.LZMAError)
    with contextlib.suppress(ImportError):
        import zstandard

        errors += (zstandard.ZstdError,)
    return errors


def _lines(stream: _ByteStream) -> Iterator[bytes]:
    """The lines of a binary stream, without their line breaks, a block read at a time."""
    pending = b""
    while block := stream.read(_READ_BLOCK):
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


def _holds_json_lines(path: Path) -> bool:
    """Whether a ``.json`` file is JSON Lines rather than one JSON document (SQuAD):
    its first line is a whole JSON object, with a ``text`` field or another line after."""
    with _open_binary(path) as stream:
        lines = (raw for raw in _lines(stream) if raw.strip())
        first = next(lines, None)
        if first is None:
            return False
        try:
            record = json.loads(first.decode("utf-8-sig"))
        except ValueError:  # also UnicodeDecodeError
            return False
        if not isinstance(record, dict):
            return False
        return "text" in record or next(lines, None) is not None


def _read_squad(path: Path) -> Iterator[tuple[Document, list[Question]]]:
    source = path.name
    errors: tuple[type[BaseException], ...] = (
        ValueError,
        KeyError,
        TypeError,
        *_decompression_errors(),
    )
    try:
        with _open_binary(path) as stream:
            data = json.loads(stream.read().decode("utf-8-sig"))["data"]
    except errors as error:
        raise CorpusError(f"{path}: not a SQuAD-format file ({error})") from error
    stem = _stem(path)
    for article_number, article in enumerate(data):
        title = str(article.get("title", "")).strip()
        for paragraph_number, paragraph in enumerate(article["paragraphs"]):
            context = str(paragraph["context"])
            prefix = f"{title}{SQUAD_TITLE_SEPARATOR}"
            text = context[len(prefix) :] if title and context.startswith(prefix) else context
            doc_id = f"{stem}:{article_number}:{paragraph_number}"
            questions = [
                Question(
                    id=str(qa["id"]),
                    question=str(qa["question"]),
                    answers=tuple(dict.fromkeys(str(a["text"]) for a in qa.get("answers", []))),
                    doc_id=doc_id,
                )
                for qa in paragraph.get("qas", [])
                if not qa.get("is_impossible", False)
            ]
            yield Document(doc_id, title, text.strip(), metadata={"source": source}), questions
