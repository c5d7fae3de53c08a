"""Training of the extractive generator's sentence scorer on JaQuAD (never on JSQuAD,
the benchmark of record).

Each training question is run through the built-in first stage and the packaged
reranker, as in serving; the sentences of its top passages, those containing a gold
answer as positives, train a linear model over ``SentenceFeatures`` with a listwise
(softmax) loss. Every tenth article is held out; the report gives, for several
``second_sentence_ratio`` settings, how often the answer holds a gold answer, its
character F1 and its length. Run ``serve.training.reranker`` first: this uses its
question phrases and weights.

    python -m serve.training.generator --jaquad ../shared/data/jaquad
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from deployments.generator.config import DEFAULT_SENTENCE_WEIGHTS, ExtractiveGeneratorConfig
from deployments.generator.extractive import ExtractiveGenerator
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.sentence_features import (
    SENTENCE_FEATURE_NAMES,
    SentenceFeatures,
    candidate_sentences,
)
from deployments.reranker.config import LexicalRerankerConfig
from deployments.reranker.lexical import LexicalReranker
from serve.evaluation.quality import char_f1, contains_answer
from serve.indexing.corpus import Question
from serve.training.jaquad import (
    FitSettings,
    JaquadCorpus,
    Reporter,
    fit_scorer,
    training_files,
    training_parser,
)


@dataclass(frozen=True)
class GeneratorTrainingSettings(FitSettings):
    max_train_questions: int = 6_000
    iterations: int = 500
    top_n: int = 5
    """Reranked passages the generator answers from."""
    reported_ratios: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 1.0)
    """``second_sentence_ratio`` values whose held-out answer quality is reported."""


@dataclass(frozen=True)
class GeneratorTrainingReport:
    train_questions: int
    held_out_questions: int
    answers: dict[str, dict[str, float]]
    """Held-out containment, character F1 and mean length per ``second_sentence_ratio``."""
    seconds: float


@dataclass(frozen=True)
class _Request:
    question: Question
    passages: list[str]
    """Texts of the top reranked passages, best first."""


def train_sentence_scorer(
    jaquad_files: Sequence[Path],
    out: Path,
    settings: GeneratorTrainingSettings = GeneratorTrainingSettings(),
    progress: bool = True,
) -> GeneratorTrainingReport:
    """Train the generator's sentence scorer on the JaQuAD files, write it to ``out``."""
    started = time.monotonic()
    say = Reporter(progress)
    corpus = JaquadCorpus.load(jaquad_files, settings.held_out_every)
    train = corpus.sample_training(settings.max_train_questions, settings.seed)
    held_out = corpus.held_out
    phrases = QuestionPhrases.load()
    reranker = LexicalReranker(LexicalRerankerConfig(), corpus.stats)
    rows = corpus.first_stage(phrases, [q.question for q in train + held_out], settings.top_k)
    requests = [
        _Request(question, _top_passages(corpus, reranker, question, found, settings.top_n))
        for question, found in zip(
            train + held_out, tqdm(rows, desc="reranking", disable=not progress), strict=True
        )
    ]
    say(f"{len(train)} training and {len(held_out)} held-out questions reranked")

    features, labels, valid = _sentence_lists(SentenceFeatures(phrases), requests[: len(train)])
    model = fit_scorer(SENTENCE_FEATURE_NAMES, features, labels, valid, settings, phrases.phrases)
    answers = {
        f"second_sentence_ratio={ratio}": _answer_quality(
            ExtractiveGenerator(ExtractiveGeneratorConfig(second_sentence_ratio=ratio), model),
            requests[len(train) :],
        )
        for ratio in settings.reported_ratios
    }
    report = GeneratorTrainingReport(
        train_questions=len(train),
        held_out_questions=len(held_out),
        answers=answers,
        seconds=round(time.monotonic() - started, 1),
    )
    model = dataclasses.replace(
        model,
        training={
            "data": "JaQuAD v0.1.0 train split: " + ", ".join(f.name for f in corpus.files),
            "settings": asdict(settings),
            "held_out": answers,
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    for setting, row in answers.items():
        say(f"held out, {setting}: {row}")
    say(f"weights written to {out} ({report.seconds:.0f} s)")
    return report


def _top_passages(
    corpus: JaquadCorpus,
    reranker: LexicalReranker,
    question: Question,
    rows: NDArray[np.int64],
    top_n: int,
) -> list[str]:
    found = [corpus.passages[int(r)] for r in rows]
    scores = reranker.score(question.question, [p.document_text for p in found])
    return [found[int(i)].text for i in np.argsort(-scores, kind="stable")[:top_n]]


def _sentence_lists(
    extractor: SentenceFeatures, requests: Sequence[_Request]
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
    """Features (requests, sentences, features) padded to the longest list, labels
    (the sentence holds a gold answer) and which entries are real sentences."""
    lists = []
    for request in requests:
        sentences = candidate_sentences(request.passages)
        lists.append(
            (
                extractor.extract(request.question.question, sentences),
                [contains_answer(s.text, request.question.answers) for s in sentences],
            )
        )
    longest = max((len(f) for f, _ in lists), default=0)
    features = np.zeros((len(lists), longest, len(SENTENCE_FEATURE_NAMES)))
    labels = np.zeros((len(lists), longest), dtype=bool)
    valid = np.zeros((len(lists), longest), dtype=bool)
    for i, (f, y) in enumerate(lists):
        features[i, : len(f)] = f
        labels[i, : len(y)] = y
        valid[i, : len(y)] = True
    return features, labels, valid


def _answer_quality(
    generator: ExtractiveGenerator, requests: Sequence[_Request]
) -> dict[str, float]:
    contained, f1, lengths = [], [], []
    for request in requests:
        chosen = generator.choose(request.question.question, request.passages)
        prose = "".join(s.text for s in chosen) or generator.config.no_answer_message
        contained.append(contains_answer(prose, request.question.answers))
        f1.append(max((char_f1(prose, g) for g in request.question.answers), default=0.0))
        lengths.append(len(prose))
    return {
        "containment": round(float(np.mean(contained)), 4),
        "char_f1": round(float(np.mean(f1)), 4),
        "mean_chars": round(float(np.mean(lengths)), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = training_parser(
        "Train the extractive generator's sentence scorer on JaQuAD.",
        DEFAULT_SENTENCE_WEIGHTS,
        GeneratorTrainingSettings(),
    )
    args = parser.parse_args(argv)
    files = training_files(parser, args.jaquad)
    settings = GeneratorTrainingSettings(
        max_train_questions=args.max_train_questions, seed=args.seed
    )
    train_sentence_scorer(files, args.out, settings, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
