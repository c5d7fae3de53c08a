"""Reading documents and questions: JSONL passages and SQuAD-format JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deployments.passage import Passage
from deployments.text import chunk_text

SQUAD_TITLE_SEPARATOR = " [SEP] "


class CorpusError(ValueError):
    """An input file that cannot be read as documents or questions."""


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    title: str
    text: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    doc_id: str
    """Id of the document (SQuAD paragraph) that answers it."""


def read_documents(path: Path) -> Iterator[Document]:
    """Documents of a ``.jsonl`` passage file or a SQuAD-format ``.json`` file."""
    if path.suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif path.suffix == ".json":
        for document, _ in _read_squad(path):
            yield document
    else:
        raise CorpusError(f"{path}: expected a .jsonl passage file or a SQuAD-format .json file")


def read_questions(path: Path) -> Iterator[Question]:
    """Questions of a SQuAD-format file, each with the id of its gold paragraph."""
    if path.suffix != ".json":
        raise CorpusError(f"{path}: questions are read from SQuAD-format .json files")
    for _, questions in _read_squad(path):
        yield from questions


def split_documents(
    documents: Iterable[Document], max_chars: int, overlap_chars: int
) -> Iterator[Passage]:
    """Passages of at most ``max_chars`` characters cut at sentence boundaries."""
    for document in documents:
        chunks = chunk_text(document.text, max_chars, overlap_chars)
        for number, chunk in enumerate(chunks):
            passage_id = document.id if len(chunks) == 1 else f"{document.id}#{number}"
            yield Passage(passage_id, document.id, document.title, chunk, document.url)


def _read_jsonl(path: Path) -> Iterator[Document]:
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorpusError(f"{where}: not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise CorpusError(f"{where}: expected a JSON object")
            text, title = record.get("text"), record.get("title", "")
            if not isinstance(text, str) or not text.strip():
                raise CorpusError(f"{where}: 'text' must be a non-empty string")
            if not isinstance(title, str):
                raise CorpusError(f"{where}: 'title' must be a string")
            doc_id = str(record.get("id") or f"{path.stem}:{line_number}")
            if doc_id in seen:
                raise CorpusError(f"{where}: duplicate id {doc_id!r}")
            seen.add(doc_id)
            url = record.get("url")
            yield Document(doc_id, title.strip(), text.strip(), str(url) if url else None)


def _read_squad(path: Path) -> Iterator[tuple[Document, list[Question]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CorpusError(f"{path}: not a SQuAD-format file ({error})") from error
    for article_number, article in enumerate(data):
        title = str(article.get("title", "")).strip()
        for paragraph_number, paragraph in enumerate(article["paragraphs"]):
            context = str(paragraph["context"])
            prefix = f"{title}{SQUAD_TITLE_SEPARATOR}"
            text = context[len(prefix) :] if title and context.startswith(prefix) else context
            doc_id = f"{path.stem}:{article_number}:{paragraph_number}"
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
            yield Document(doc_id, title, text.strip()), questions
