"""Japanese text handling shared by indexing, the lexical engines and the generator."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

SENTENCE_END = frozenset("。！？!?")
OPENING_BRACKETS = "「『（(【〔［[｛{〈《"
CLOSING_BRACKETS = "」』）)】〕］]｝}〉》"
_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC (full-width ASCII to half-width, half-width kana to full-width),
    lower case, and runs of whitespace collapsed to one space."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def split_sentences(text: str) -> list[str]:
    """Split at 。！？!? and line breaks, never inside 「」（） and the like.

    Closing brackets and quotes right after a terminator stay with its sentence.
    Text without any terminator is one sentence.
    """
    sentences: list[str] = []
    start = 0
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in OPENING_BRACKETS:
            depth += 1
        elif ch in CLOSING_BRACKETS:
            depth = max(0, depth - 1)
        if ch == "\n" or (ch in SENTENCE_END and depth == 0):
            end = i + 1
            while end < n and (text[end] in SENTENCE_END or text[end] in CLOSING_BRACKETS):
                end += 1
            piece = text[start:end].strip()
            if piece:
                sentences.append(piece)
            start = end
            i = end
            continue
        i += 1
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def chunk_text(text: str, max_chars: int, overlap_chars: int) -> list[str]:
    """Group whole sentences into chunks of at most ``max_chars`` characters.

    Consecutive chunks share trailing sentences of up to ``overlap_chars``
    characters, so a fact that straddles a boundary is whole in one of them. A
    single sentence longer than ``max_chars`` is cut into fixed-size pieces.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    if not 0 <= overlap_chars < max_chars:
        raise ValueError("overlap_chars must be at least 0 and less than max_chars")
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for sentence in _bounded_sentences(text, max_chars):
        if current and size + len(sentence) > max_chars:
            chunks.append("".join(current))
            current, size = _overlap_tail(current, overlap_chars, max_chars - len(sentence))
        current.append(sentence)
        size += len(sentence)
    if current:
        chunks.append("".join(current))
    return chunks


def _bounded_sentences(text: str, max_chars: int) -> Iterator[str]:
    for sentence in split_sentences(text):
        for start in range(0, len(sentence), max_chars):
            yield sentence[start : start + max_chars]


def _overlap_tail(sentences: list[str], overlap_chars: int, room: int) -> tuple[list[str], int]:
    """The trailing sentences of a finished chunk that start the next one."""
    budget = min(overlap_chars, room)
    tail: list[str] = []
    size = 0
    for sentence in reversed(sentences):
        if size + len(sentence) > budget:
            break
        tail.insert(0, sentence)
        size += len(sentence)
    return tail, size


def title_subject(title: str) -> str:
    """What a passage title is about: its head up to the first 「の」 (「北海道の概要」 ->
    「北海道」); a title without 「の」 is its own subject."""
    head, _, _ = title.partition("の")
    return head.strip() or title.strip()


def names(text: str, subject: str) -> bool:
    """Whether ``text`` names ``subject``: whole, or without its last character when at
    least two remain (a prefecture or city named without 都/道/府/県/市)."""
    if not subject:
        return False
    return subject in text or (len(subject) >= 3 and subject[:-1] in text)
