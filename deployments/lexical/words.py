"""Content words of Japanese text without a tokenizer: runs of one script.

A run of kanji, of katakana, or of Latin letters and digits is almost always a
content word or part of one (names, technical terms, numbers); hiragana runs are
mostly particles and inflections and are left out.
"""

from __future__ import annotations

import re

_CONTENT_RUN = re.compile(r"[\u3005\u4e00-\u9fff\uf900-\ufaff]+|[\u30a1-\u30fa\u30fc]+|[a-z0-9]+")
"""Kanji (with the repeat mark 々), katakana (with the long-vowel mark ー), or a-z0-9."""


def content_word_spans(cleaned: str, min_length: int = 2) -> list[tuple[int, int]]:
    """``(start, end)`` of each content word of at least ``min_length`` characters in
    text already normalised (see ``deployments.lexical.ngrams.codepoints``)."""
    return [m.span() for m in _CONTENT_RUN.finditer(cleaned) if m.end() - m.start() >= min_length]
