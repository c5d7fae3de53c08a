"""The built-in generator: extractive answers with citations, streamed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.generator.protocol import FinishReason, GeneratedText, GenerationRequest
from deployments.lexical.ngrams import codepoints, hashed_ngrams
from deployments.text import split_sentences


@dataclass(frozen=True, slots=True)
class _Candidate:
    passage_number: int
    position: int
    sentence: str
    score: float


class ExtractiveGenerator:
    """Picks the sentences of the passages that share most with the question."""

    def __init__(self, config: ExtractiveGeneratorConfig) -> None:
        self.config = config

    @property
    def model_name(self) -> str:
        return "extractive"

    def answer(self, request: GenerationRequest) -> str:
        """The whole answer text, with citation markers."""
        chosen = self._choose(request)
        if not chosen:
            return self.config.no_answer_message
        return "".join(f"{c.sentence}[{c.passage_number}]" for c in chosen)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        text = self.answer(request)
        size = self.config.piece_chars
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        limit = request.max_tokens if request.max_tokens is not None else len(pieces)
        for index, piece in enumerate(pieces[:limit]):
            if index and self.config.piece_delay_s:
                await asyncio.sleep(self.config.piece_delay_s)
            last = index == min(limit, len(pieces)) - 1
            finish: FinishReason = "stop" if limit >= len(pieces) else "length"
            yield GeneratedText(text=piece, finish_reason=finish if last else None)

    def _choose(self, request: GenerationRequest) -> list[_Candidate]:
        question = _ngram_set(request.question)
        if not question:
            return []
        candidates: list[_Candidate] = []
        for number, passage in enumerate(request.passages, start=1):
            for position, sentence in enumerate(split_sentences(passage.text)):
                overlap = len(question & _ngram_set(sentence)) / len(question)
                candidates.append(_Candidate(number, position, sentence, overlap))
        candidates = [c for c in candidates if c.score >= self.config.min_score]
        candidates.sort(key=lambda c: (-c.score, c.passage_number, c.position))
        best = candidates[: self.config.max_sentences]
        return sorted(best, key=lambda c: (c.passage_number, c.position))


def _ngram_set(text: str) -> set[int]:
    return {int(h) for h in np.unique(hashed_ngrams(codepoints(text), 2))}
