"""The built-in generator: extractive answers with citations, streamed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import numpy as np

from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.generator.protocol import FinishReason, GeneratedText, GenerationRequest
from deployments.lexical.linear_model import LinearModel
from deployments.lexical.ngrams import cleaned
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.sentence_features import (
    SENTENCE_FEATURE_NAMES,
    CandidateSentence,
    SentenceFeatures,
    candidate_sentences,
)
from deployments.text import names, title_subject


class ExtractiveGenerator:
    """Answers with the sentence of the passages most likely to hold the answer, by a
    linear model over ``SentenceFeatures``, plus up to ``max_sentences - 1`` others the
    model finds nearly as likely; each is followed by the marker ``[n]`` of its passage,
    in passage order. Says ``no_answer_message`` when the best sentence shares too
    little with the question."""

    def __init__(self, config: ExtractiveGeneratorConfig, model: LinearModel | None = None) -> None:
        self.config = config
        self.model = model if model is not None else LinearModel.load(config.weights_file)
        self.model.require_features(SENTENCE_FEATURE_NAMES, "python -m serve.training.generator")
        self.features = SentenceFeatures(QuestionPhrases(self.model.question_phrases))

    @property
    def model_name(self) -> str:
        return "extractive"

    def answer(self, request: GenerationRequest) -> str:
        """The whole answer text, with citation markers. A sentence that leaves its
        passage's subject implicit (「面積は都道府県の中で最も広く…」) is introduced by the
        passage title (「「北海道の概要」によると、面積は…」), once per subject, so that the
        answer says what it is about."""
        chosen = self.choose(request.question, [p.text for p in request.passages])
        if not chosen:
            return self.config.no_answer_message
        parts, said = [], set()
        for sentence in chosen:
            title = request.passages[sentence.passage_number - 1].title
            subject = title_subject(title)
            text = sentence.text
            if subject and subject not in said and not names(text, subject):
                text = f"「{title}」によると、{text}"
            said.add(subject)
            parts.append(f"{text}[{sentence.passage_number}]")
        return "".join(parts)

    def choose(self, question: str, passages: Sequence[str]) -> list[CandidateSentence]:
        """The sentences of the answer, in passage order; empty when none is relevant."""
        sentences = candidate_sentences(passages)
        if not sentences:
            return []
        scores = self.model.score(self.features.extract(question, sentences))
        order = np.argsort(-scores, kind="stable")
        best = sentences[int(order[0])]
        if self.question_share(question, best.text) < self.config.min_score:
            return []
        chosen = [best]
        for index in order[1 : self.config.max_sentences]:
            if np.exp(scores[index] - scores[order[0]]) < self.config.second_sentence_ratio:
                break
            chosen.append(sentences[int(index)])
        return sorted(chosen, key=lambda s: (s.passage_number, s.position))

    def question_share(self, question: str, sentence: str) -> float:
        """Share of the question's bigrams, question phrases left out, in ``sentence``."""
        asked = self.features.topical_ngrams(cleaned(question), 2)
        if not asked:
            return 0.0
        return len(asked & self.features.topical_ngrams(cleaned(sentence), 2)) / len(asked)

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
