"""Training of the lexical reranker on JaQuAD (never on JSQuAD, the benchmark of record).

The JaQuAD contexts are chunked, indexed and searched as in serving (the hashing
embedder over an exact FAISS index); each training question's top candidates, the
chunks of its gold paragraph as positives and the rest as hard negatives, train a
linear model over ``LexicalFeatures`` with a listwise (softmax) loss. A logistic fit
of the label on the model's score then calibrates ``relevance``. Every tenth article
is held out; the report gives recall and MRR on its questions before and after
reranking. Question phrases, learned first, go to the embedder's packaged list too.

    python -m serve.training.reranker --jaquad ../shared/data/jaquad
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from deployments.lexical.features import FEATURE_NAMES, LexicalFeatures
from deployments.lexical.question_phrases import DEFAULT_PHRASES_FILE, QuestionPhrases
from deployments.passage import Hit, Passage
from deployments.reranker.config import DEFAULT_WEIGHTS
from deployments.text import split_sentences
from serve.evaluation.quality import RetrievalScores, gold_rank
from serve.indexing.corpus import Question
from serve.training.jaquad import (
    FitSettings,
    JaquadCorpus,
    PhraseSettings,
    Reporter,
    article_of,
    fit_scorer,
    learn_question_phrases,
    training_files,
    training_parser,
)


@dataclass(frozen=True)
class TrainingSettings(FitSettings):
    phrases: PhraseSettings = field(default_factory=PhraseSettings)


@dataclass(frozen=True)
class TrainingReport:
    train_questions: int
    held_out_questions: int
    passages: int
    question_phrases: int
    first_stage: dict[str, float]
    """Held-out retrieval quality of the first stage alone."""
    reranked: dict[str, float]
    """Held-out retrieval quality after reranking the first stage's ``top_k``."""
    seconds: float


def train_lexical_reranker(
    jaquad_files: Sequence[Path],
    out: Path,
    phrases_out: Path | None = None,
    settings: TrainingSettings = TrainingSettings(),
    progress: bool = True,
) -> TrainingReport:
    """Train the reranker on the JaQuAD files and write its weights to ``out``; the
    question phrases learned on the way (which the embedder's queries leave out too) go
    to ``phrases_out`` when given."""
    started = time.monotonic()
    say = Reporter(progress)
    corpus = JaquadCorpus.load(jaquad_files, settings.held_out_every)
    train = corpus.sample_training(settings.max_train_questions, settings.seed)
    held_out = corpus.held_out
    say(
        f"{len(corpus.documents)} paragraphs, {len(corpus.passages)} passages; "
        f"{len(corpus.training)} training questions ({len(train)} used for the model), "
        f"{len(held_out)} held out"
    )
    phrases = learn_question_phrases(
        [q.question for q in corpus.training],
        [article_of(q) for q in corpus.training],
        (s for d in corpus.documents for s in split_sentences(d.text)),
        settings.phrases,
    )
    say(f"{len(phrases)} question phrases, e.g. {' '.join(phrases[:12])}")
    question_phrases = QuestionPhrases(phrases)
    if phrases_out is not None:
        question_phrases.save(phrases_out)

    rows = corpus.first_stage(
        question_phrases, [q.question for q in train + held_out], settings.top_k
    )
    say(f"first stage searched ({time.monotonic() - started:.0f} s)")
    extractor = LexicalFeatures(corpus.stats, question_phrases)
    train_features, train_labels = _candidates(
        extractor, corpus.passages, train, rows[: len(train)], progress
    )
    held_features, _ = _candidates(
        extractor, corpus.passages, held_out, rows[len(train) :], progress
    )

    model = fit_scorer(FEATURE_NAMES, train_features, train_labels, None, settings, tuple(phrases))
    held_rows = rows[len(train) :]
    first = _ranks(corpus.passages, held_out, held_rows, None)
    reranked = _ranks(corpus.passages, held_out, held_rows, model.score(held_features))
    report = TrainingReport(
        train_questions=len(train),
        held_out_questions=len(held_out),
        passages=len(corpus.passages),
        question_phrases=len(phrases),
        first_stage=_rounded(first.as_row()),
        reranked=_rounded(reranked.as_row()),
        seconds=round(time.monotonic() - started, 1),
    )
    model = dataclasses.replace(
        model,
        training={
            "data": "JaQuAD v0.1.0 train split: " + ", ".join(f.name for f in corpus.files),
            "settings": asdict(settings),
            "held_out": {"first_stage": report.first_stage, "reranked": report.reranked},
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    say(f"held out, first stage: {report.first_stage}")
    say(f"held out, reranked:    {report.reranked}")
    say(f"weights written to {out} ({report.seconds:.0f} s)")
    return report


def _candidates(
    extractor: LexicalFeatures,
    passages: Sequence[Passage],
    questions: Sequence[Question],
    rows: NDArray[np.int64],
    progress: bool,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Features (questions, top_k, features) of each question's candidates, and whether
    each is a chunk of the question's gold paragraph."""
    features = np.zeros((len(questions), rows.shape[1], len(FEATURE_NAMES)), dtype=np.float32)
    labels = np.zeros(rows.shape, dtype=bool)
    for i, question in enumerate(tqdm(questions, desc="features", disable=not progress)):
        found = [passages[int(r)] for r in rows[i]]
        features[i] = extractor.extract(question.question, [p.document_text for p in found])
        labels[i] = [p.doc_id == question.doc_id for p in found]
    return features, labels


def _ranks(
    passages: Sequence[Passage],
    questions: Sequence[Question],
    rows: NDArray[np.int64],
    scores: NDArray[np.float32] | None,
) -> RetrievalScores:
    """Gold ranks in first-stage order, or reordered by ``scores`` (stable for ties)."""
    result = RetrievalScores()
    for i, question in enumerate(questions):
        order = (
            np.arange(rows.shape[1]) if scores is None else np.argsort(-scores[i], kind="stable")
        )
        hits = [Hit(passages[int(rows[i, j])], 0.0) for j in order]
        result.ranks.append(gold_rank(hits, question.doc_id))
    return result


def _rounded(row: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) for key, value in row.items()}


def main(argv: Sequence[str] | None = None) -> int:
    defaults = TrainingSettings()
    parser = training_parser("Train the lexical reranker on JaQuAD.", DEFAULT_WEIGHTS, defaults)
    parser.add_argument(
        "--phrases-out",
        type=Path,
        default=DEFAULT_PHRASES_FILE,
        help="question phrases JSON to write (the embedder leaves them out of queries)",
    )
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    args = parser.parse_args(argv)
    files = training_files(parser, args.jaquad)
    settings = TrainingSettings(
        top_k=args.top_k, max_train_questions=args.max_train_questions, seed=args.seed
    )
    train_lexical_reranker(files, args.out, args.phrases_out, settings, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
