"""Training of the lexical reranker on JaQuAD (never on JSQuAD, the benchmark of record).

The JaQuAD contexts are chunked, indexed and searched exactly as in serving (the
hashing embedder over an exact FAISS index); each training question's top
candidates, with the chunks of its gold paragraph as positives and the rest as hard
negatives, train a linear model with a listwise (softmax) loss. A logistic fit of
the label on the model's score then calibrates ``relevance``. Every tenth article
is held out, and the report gives recall and MRR on its questions before and after
reranking.

    python -m serve.reranker_training --jaquad ../shared/data/jaquad \\
        --out deployments/reranker/lexical_weights.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.hashing import HashingEmbedder
from deployments.lexical.features import FEATURE_NAMES, LexicalFeatures
from deployments.lexical.ngrams import cleaned
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.stats import LexicalStats
from deployments.passage import Hit, Passage
from deployments.reranker.lexical_model import DEFAULT_WEIGHTS, LexicalRankingModel
from deployments.text import split_sentences
from serve.corpus import Question, read_documents, read_questions, split_documents
from serve.evaluation import RetrievalScores, gold_rank
from serve.indexing import BuildSettings


@dataclass(frozen=True)
class TrainingSettings:
    top_k: int = 50
    """Candidates per question from the first stage, as the retriever's ``top_k``."""
    max_train_questions: int = 12_000
    """Training questions sampled (the linear model needs few; features cost time)."""
    held_out_every: int = 10
    """Every n-th article (in file order) is held out for evaluation."""
    iterations: int = 600
    learning_rate: float = 0.05
    l2: float = 1e-3
    seed: int = 0
    phrase_min_question_share: float = 0.002
    """A question phrase occurs in at least this share of the training questions, ..."""
    phrase_min_articles: int = 40
    """... in questions about at least this many articles (not one topic's word), ..."""
    phrase_min_ratio: float = 20.0
    """... and this many times more often per question than per document sentence."""


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


@dataclass(frozen=True)
class _Candidates:
    features: NDArray[np.float32]
    """(questions, top_k, features)."""
    labels: NDArray[np.bool_]
    """(questions, top_k): the candidate is a chunk of the question's gold paragraph."""
    rows: NDArray[np.int64]
    """(questions, top_k): passage rows, best first-stage score first."""


def train_lexical_reranker(
    jaquad_files: Sequence[Path],
    out: Path,
    settings: TrainingSettings = TrainingSettings(),
    progress: bool = True,
) -> TrainingReport:
    """Train the reranker on the JaQuAD files, write its weights to ``out``, report."""
    started = time.monotonic()
    say = _Reporter(progress)
    files = sorted(jaquad_files)
    if not files:
        raise ValueError("no JaQuAD files given")
    chunking = BuildSettings().chunking
    documents = list(itertools.chain.from_iterable(read_documents(f) for f in files))
    passages = list(split_documents(documents, chunking.max_chars, chunking.overlap_chars))
    questions = list(itertools.chain.from_iterable(read_questions(f) for f in files))
    training, held_out = _split_by_article(questions, settings.held_out_every)
    permutation = np.random.default_rng(settings.seed).permutation(len(training))
    train = [training[i] for i in np.sort(permutation[: settings.max_train_questions])]
    say(
        f"{len(documents)} paragraphs, {len(passages)} passages; {len(training)} training "
        f"questions ({len(train)} used for the model), {len(held_out)} held out"
    )

    stats = LexicalStats.fit(p.document_text for p in passages)
    phrases = learn_question_phrases(
        [q.question for q in training],
        [q.doc_id.rsplit(":", 1)[0] for q in training],
        (s for d in documents for s in split_sentences(d.text)),
        settings,
    )
    say(f"{len(phrases)} question phrases, e.g. {' '.join(phrases[:12])}")

    rows = _first_stage(stats, passages, [q.question for q in train + held_out], settings.top_k)
    say(f"first stage searched ({time.monotonic() - started:.0f} s)")
    extractor = LexicalFeatures(stats, QuestionPhrases(phrases))
    train_set = _candidates(extractor, passages, train, rows[: len(train)], progress)
    held_out_set = _candidates(extractor, passages, held_out, rows[len(train) :], progress)

    mean, scale, weights = fit_listwise(
        train_set.features,
        train_set.labels,
        settings.iterations,
        settings.learning_rate,
        settings.l2,
    )
    unscaled = LexicalRankingModel(FEATURE_NAMES, mean, scale, weights, 1.0, 0.0)
    slope, intercept = fit_calibration(
        unscaled.score(train_set.features.reshape(-1, len(FEATURE_NAMES))),
        train_set.labels.reshape(-1),
    )
    first = _ranks(passages, held_out, held_out_set.rows, None)
    reranked = _ranks(passages, held_out, held_out_set.rows, unscaled.score(held_out_set.features))
    report = TrainingReport(
        train_questions=len(train),
        held_out_questions=len(held_out),
        passages=len(passages),
        question_phrases=len(phrases),
        first_stage=_rounded(first.as_row()),
        reranked=_rounded(reranked.as_row()),
        seconds=round(time.monotonic() - started, 1),
    )
    model = LexicalRankingModel(
        FEATURE_NAMES,
        mean,
        scale,
        weights,
        slope,
        intercept,
        tuple(phrases),
        training={
            "data": "JaQuAD v0.1.0 train split: " + ", ".join(f.name for f in files),
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


def learn_question_phrases(
    questions: Sequence[str],
    topics: Sequence[str],
    sentences: Iterable[str],
    settings: TrainingSettings = TrainingSettings(),
) -> list[str]:
    """Character 1- to 3-grams much more frequent in questions than in document
    sentences, asked about many topics (``topics[i]`` names question i's article)."""
    share: Counter[str] = Counter()
    topics_of: dict[str, set[str]] = {}
    for question, topic in zip(questions, topics, strict=True):
        for gram in _ngram_set(question):
            share[gram] += 1
            topics_of.setdefault(gram, set()).add(topic)
    least = settings.phrase_min_question_share * max(len(questions), 1)
    frequent = {
        g
        for g, count in share.items()
        if count >= least and len(topics_of[g]) >= settings.phrase_min_articles
    }
    in_sentences: Counter[str] = Counter()
    total_sentences = 0
    for sentence in sentences:
        total_sentences += 1
        in_sentences.update(_ngram_set(sentence) & frequent)
    ratio = {
        g: (share[g] / len(questions)) / ((in_sentences[g] + 1) / max(total_sentences, 1))
        for g in frequent
    }
    return sorted(
        (g for g in frequent if ratio[g] >= settings.phrase_min_ratio),
        key=lambda g: (-share[g], g),
    )


def fit_listwise(
    features: NDArray[np.float32],
    labels: NDArray[np.bool_],
    iterations: int = 600,
    learning_rate: float = 0.05,
    l2: float = 1e-3,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Mean, scale and weights of a linear scorer trained with the listwise softmax loss
    (the negative log of the probability mass on the positives), full-batch Adam.

    ``features`` is (lists, candidates, features); lists without a positive are skipped.
    """
    keep = labels.any(axis=1)
    x, y = features[keep].astype(np.float64), labels[keep]
    flat = x.reshape(-1, x.shape[-1])
    mean, scale = flat.mean(axis=0), flat.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    w = np.zeros(x.shape[-1])
    first_moment, second_moment = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, iterations + 1):
        logits = z @ w
        logits -= logits.max(axis=1, keepdims=True)
        mass = np.exp(logits)
        predicted = mass / mass.sum(axis=1, keepdims=True)
        target = np.where(y, mass, 0.0)
        target /= target.sum(axis=1, keepdims=True)
        gradient = np.einsum("qk,qkf->f", predicted - target, z) / len(z) + l2 * w
        first_moment = 0.9 * first_moment + 0.1 * gradient
        second_moment = 0.999 * second_moment + 0.001 * gradient**2
        corrected = first_moment / (1 - 0.9**step)
        w -= learning_rate * corrected / (np.sqrt(second_moment / (1 - 0.999**step)) + 1e-8)
    return mean.astype(np.float32), scale.astype(np.float32), w.astype(np.float32)


def fit_calibration(
    scores: NDArray[np.float32], labels: NDArray[np.bool_], iterations: int = 50
) -> tuple[float, float]:
    """Slope and intercept of the logistic regression of ``labels`` on ``scores``
    (Newton's method), so that ``sigmoid(slope * score + intercept)`` is a probability."""
    x = np.stack([scores.astype(np.float64), np.ones(len(scores))], axis=1)
    y = labels.astype(np.float64)
    theta = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ theta, -60.0, 60.0)))
        gradient = x.T @ (p - y)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def _split_by_article(
    questions: Sequence[Question], held_out_every: int
) -> tuple[list[Question], list[Question]]:
    articles = list(dict.fromkeys(q.doc_id.rsplit(":", 1)[0] for q in questions))
    held = {a for i, a in enumerate(articles) if i % held_out_every == 0}
    train = [q for q in questions if q.doc_id.rsplit(":", 1)[0] not in held]
    return train, [q for q in questions if q.doc_id.rsplit(":", 1)[0] in held]


def _first_stage(
    stats: LexicalStats, passages: Sequence[Passage], queries: Sequence[str], top_k: int
) -> NDArray[np.int64]:
    """(queries, top_k) passage rows found by the default embedder, best first."""
    embedder = HashingEmbedder(HashingEmbedderConfig(), stats)
    index = faiss.IndexFlatIP(embedder.config.dimension)
    for start in range(0, len(passages), 1024):
        batch = passages[start : start + 1024]
        index.add(embedder.embed_passages([p.document_text for p in batch]))
    rows = []
    for start in range(0, len(queries), 1024):
        _, found = index.search(embedder.embed_queries(queries[start : start + 1024]), top_k)
        rows.append(found)
    return np.concatenate(rows).astype(np.int64)


def _candidates(
    extractor: LexicalFeatures,
    passages: Sequence[Passage],
    questions: Sequence[Question],
    rows: NDArray[np.int64],
    progress: bool,
) -> _Candidates:
    features = np.zeros((len(questions), rows.shape[1], len(FEATURE_NAMES)), dtype=np.float32)
    labels = np.zeros(rows.shape, dtype=bool)
    for i, question in enumerate(tqdm(questions, desc="features", disable=not progress)):
        found = [passages[int(r)] for r in rows[i]]
        features[i] = extractor.extract(question.question, [p.document_text for p in found])
        labels[i] = [p.doc_id == question.doc_id for p in found]
    return _Candidates(features, labels, rows)


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


def _ngram_set(text: str) -> set[str]:
    text = cleaned(text)
    return {text[i : i + n] for n in (1, 2, 3) for i in range(len(text) - n + 1)}


def _rounded(row: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) for key, value in row.items()}


class _Reporter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jaquad", type=Path, required=True, help="folder of JaQuAD train_*.json files"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights JSON to write")
    defaults = TrainingSettings()
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--max-train-questions", type=int, default=defaults.max_train_questions)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    files = sorted(args.jaquad.glob("train_*.json"))
    if not files:
        parser.error(f"no train_*.json files in {args.jaquad}")
    settings = TrainingSettings(
        top_k=args.top_k, max_train_questions=args.max_train_questions, seed=args.seed
    )
    train_lexical_reranker(files, args.out, settings, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
