"""What the reranker and generator trainings share: JaQuAD read, chunked and split by
article, question phrases learned from its questions, the first stage as in serving,
and the fitting of linear models. Nothing here reads JSQuAD, the benchmark of record.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.hashing import HashingEmbedder
from deployments.lexical.linear_model import LinearModel
from deployments.lexical.ngrams import cleaned
from deployments.lexical.question_phrases import QuestionPhrases
from deployments.lexical.stats import LexicalStats
from deployments.passage import Passage
from serve.indexing.build import BuildSettings
from serve.indexing.corpus import (
    Document,
    Question,
    read_documents,
    read_questions,
    split_documents,
)


@dataclass(frozen=True)
class JaquadCorpus:
    """JaQuAD paragraphs chunked as an index build does, and its questions split by
    article into training and held-out sets."""

    files: list[Path]
    documents: list[Document]
    passages: list[Passage]
    stats: LexicalStats
    training: list[Question]
    held_out: list[Question]

    @classmethod
    def load(cls, files: Sequence[Path], held_out_every: int = 10) -> JaquadCorpus:
        """Every ``held_out_every``-th article (in file order, from the first) is held out."""
        files = sorted(files)
        if not files:
            raise ValueError("no JaQuAD files given")
        chunking = BuildSettings().chunking
        documents = list(itertools.chain.from_iterable(read_documents(f) for f in files))
        passages = list(split_documents(documents, chunking.max_chars, chunking.overlap_chars))
        questions = list(itertools.chain.from_iterable(read_questions(f) for f in files))
        articles = list(dict.fromkeys(article_of(q) for q in questions))
        held = {a for i, a in enumerate(articles) if i % held_out_every == 0}
        return cls(
            files=files,
            documents=documents,
            passages=passages,
            stats=LexicalStats.fit(p.document_text for p in passages),
            training=[q for q in questions if article_of(q) not in held],
            held_out=[q for q in questions if article_of(q) in held],
        )

    def sample_training(self, count: int, seed: int) -> list[Question]:
        """``count`` training questions drawn without replacement, in corpus order."""
        permutation = np.random.default_rng(seed).permutation(len(self.training))
        return [self.training[i] for i in np.sort(permutation[:count])]

    def first_stage(
        self, question_phrases: QuestionPhrases, queries: Sequence[str], top_k: int
    ) -> NDArray[np.int64]:
        """(queries, top_k) passage rows found by the default embedder, best first
        (``top_k`` at most the number of passages)."""
        top_k = min(top_k, len(self.passages))
        embedder = HashingEmbedder(HashingEmbedderConfig(), self.stats, question_phrases)
        index = faiss.IndexFlatIP(embedder.config.dimension)
        for start in range(0, len(self.passages), 1024):
            batch = self.passages[start : start + 1024]
            index.add(embedder.embed_passages([p.document_text for p in batch]))
        rows = []
        for start in range(0, len(queries), 1024):
            _, found = index.search(embedder.embed_queries(queries[start : start + 1024]), top_k)
            rows.append(found)
        return np.concatenate(rows).astype(np.int64)


def article_of(question: Question) -> str:
    """The article of a SQuAD question (its gold paragraph id without the paragraph)."""
    return question.doc_id.rsplit(":", 1)[0]


@dataclass(frozen=True)
class FitSettings:
    """What every model trained on JaQuAD shares: its questions, split and optimiser."""

    top_k: int = 50
    """Candidates per question from the first stage, as the retriever's ``top_k``."""
    max_train_questions: int = 12_000
    """Training questions sampled (more change nothing measurable; features cost time)."""
    held_out_every: int = 10
    """Every n-th article (in file order) is held out for evaluation."""
    iterations: int = 600
    learning_rate: float = 0.05
    l2: float = 1e-3
    seed: int = 0


def training_parser(
    description: str, weights: Path, defaults: FitSettings
) -> argparse.ArgumentParser:
    """The command-line options every JaQuAD trainer takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--jaquad", type=Path, required=True, help="folder of JaQuAD train_*.json files"
    )
    parser.add_argument("--out", type=Path, default=weights, help="weights JSON to write")
    parser.add_argument("--max-train-questions", type=int, default=defaults.max_train_questions)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def training_files(parser: argparse.ArgumentParser, folder: Path) -> list[Path]:
    """JaQuAD's ``train_*.json`` files in ``folder``; a usage error when there are none."""
    files = sorted(folder.glob("train_*.json"))
    if not files:
        parser.error(f"no train_*.json files in {folder}")
    return files


@dataclass(frozen=True)
class PhraseSettings:
    min_question_share: float = 0.002
    """A question phrase occurs in at least this share of the training questions, ..."""
    min_articles: int = 40
    """... in questions about at least this many articles (not one topic's word), ..."""
    min_ratio: float = 20.0
    """... and this many times more often per question than per document sentence."""


def learn_question_phrases(
    questions: Sequence[str],
    topics: Sequence[str],
    sentences: Iterable[str],
    settings: PhraseSettings = PhraseSettings(),
) -> list[str]:
    """Character 1- to 3-grams much more frequent in questions than in document
    sentences, asked about many topics (``topics[i]`` names question i's article);
    most frequent first."""
    share: Counter[str] = Counter()
    topics_of: dict[str, set[str]] = {}
    for question, topic in zip(questions, topics, strict=True):
        for gram in _short_ngrams(question):
            share[gram] += 1
            topics_of.setdefault(gram, set()).add(topic)
    least = settings.min_question_share * len(questions)
    frequent = {
        g
        for g, count in share.items()
        if count >= least and len(topics_of[g]) >= settings.min_articles
    }
    in_sentences: Counter[str] = Counter()
    total_sentences = 0
    for sentence in sentences:
        total_sentences += 1
        in_sentences.update(_short_ngrams(sentence) & frequent)
    ratio = {
        g: (share[g] / len(questions)) / ((in_sentences[g] + 1) / max(total_sentences, 1))
        for g in frequent
    }
    return sorted(
        (g for g in frequent if ratio[g] >= settings.min_ratio), key=lambda g: (-share[g], g)
    )


def fit_listwise(
    features: NDArray[np.floating],
    labels: NDArray[np.bool_],
    valid: NDArray[np.bool_] | None = None,
    iterations: int = 600,
    learning_rate: float = 0.05,
    l2: float = 1e-3,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Mean, scale and weights of a linear scorer trained with the listwise softmax loss
    (the negative log of the probability mass on the positives), full-batch Adam from
    zero: deterministic.

    ``features`` is (lists, candidates, features); ``valid`` marks the real candidates
    of lists padded to one length; lists without a positive are skipped.
    """
    valid = np.ones(labels.shape, dtype=bool) if valid is None else valid
    keep = (labels & valid).any(axis=1)
    x, y, m = features[keep].astype(np.float64), labels[keep] & valid[keep], valid[keep]
    mean, scale = x[m].mean(axis=0), x[m].std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    w = np.zeros(x.shape[-1])
    first_moment, second_moment = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, iterations + 1):
        logits = np.where(m, z @ w, -np.inf)
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


def fit_scorer(
    names: tuple[str, ...],
    features: NDArray[np.floating],
    labels: NDArray[np.bool_],
    valid: NDArray[np.bool_] | None,
    settings: FitSettings,
    question_phrases: tuple[str, ...] = (),
) -> LinearModel:
    """A linear scorer over ``features`` (lists of candidates, ``valid`` marking the real
    ones) fitted listwise, with its relevance calibrated on the same candidates."""
    mean, scale, weights = fit_listwise(
        features,
        labels,
        valid,
        iterations=settings.iterations,
        learning_rate=settings.learning_rate,
        l2=settings.l2,
    )
    fitted = LinearModel(names, mean, scale, weights, 1.0, 0.0, question_phrases)
    mask = np.ones(labels.shape, dtype=bool) if valid is None else valid
    slope, intercept = fit_calibration(fitted.score(features[mask]), labels[mask])
    return dataclasses.replace(fitted, slope=slope, intercept=intercept)


def fit_calibration(
    scores: NDArray[np.floating], labels: NDArray[np.bool_], iterations: int = 50
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


def _short_ngrams(text: str) -> set[str]:
    text = cleaned(text)
    return {text[i : i + n] for n in (1, 2, 3) for i in range(len(text) - n + 1)}


class Reporter:
    """Progress lines on stderr, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)
