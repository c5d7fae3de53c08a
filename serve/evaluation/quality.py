"""Retrieval and answer quality over SQuAD-format questions, with the serving engines."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deployments.embedder.config import EmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.generator.config import GeneratorConfig
from deployments.generator.factory import create_generator
from deployments.generator.protocol import ChatTurn, GenerationRequest
from deployments.passage import Hit
from deployments.reranker.config import RerankerConfig
from deployments.reranker.factory import create_reranker
from deployments.reranker.protocol import RerankerEngine, RerankScores, rank_hits
from deployments.retriever.config import RetrieverConfig
from deployments.retriever.faiss_search import FaissRetriever
from deployments.text import names, normalize, split_sentences, title_subject
from serve.indexing.corpus import Question, read_questions

RECALL_CUTOFFS = (1, 5, 20)
MRR_CUTOFF = 10
_CITATION = re.compile(r"\[\d+\]")


@dataclass
class RetrievalScores:
    """Where each question's gold document ranked (1-based; None when not retrieved)."""

    ranks: list[int | None] = field(default_factory=list)

    def recall(self, k: int) -> float:
        return sum(1 for r in self.ranks if r is not None and r <= k) / max(len(self.ranks), 1)

    def mrr(self, k: int = MRR_CUTOFF) -> float:
        total = sum(1.0 / r for r in self.ranks if r is not None and r <= k)
        return total / max(len(self.ranks), 1)

    def as_row(self) -> dict[str, float]:
        row = {f"recall@{k}": self.recall(k) for k in RECALL_CUTOFFS}
        row[f"mrr@{MRR_CUTOFF}"] = self.mrr()
        return row


@dataclass
class AnswerScores:
    contained: list[bool] = field(default_factory=list)
    f1: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    sentences: list[int] = field(default_factory=list)
    named: list[bool] = field(default_factory=list)
    """Whether the answer names the subject of its gold passage (its title's head)."""

    def as_row(self) -> dict[str, float]:
        n = max(len(self.contained), 1)
        return {
            "containment": sum(self.contained) / n,
            "names_subject": sum(self.named) / n,
            "char_f1": float(np.mean(self.f1)) if self.f1 else 0.0,
            "mean_chars": float(np.mean(self.lengths)) if self.lengths else 0.0,
            "max_sentences": float(max(self.sentences, default=0)),
        }


def gold_rank(hits: Sequence[Hit], gold_doc_id: str) -> int | None:
    """Rank of the gold document among distinct documents, chunks merged."""
    seen: set[str] = set()
    for hit in hits:
        doc_id = hit.passage.doc_id
        if doc_id in seen:
            continue
        seen.add(doc_id)
        if doc_id == gold_doc_id:
            return len(seen)
    return None


def rerank_hits(reranker: RerankerEngine, query: str, hits: Sequence[Hit]) -> list[Hit]:
    """Hits sorted by reranker score (stable for ties), scores attached."""
    if not hits:
        return []
    raw = reranker.score(query, [h.passage.document_text for h in hits])
    return rank_hits(hits, RerankScores(raw, reranker.relevance(raw)))


class Pipeline:
    """Embedder, retriever and reranker engines over one index version, without Ray."""

    def __init__(
        self,
        version_dir: Path,
        embedder: EmbedderConfig,
        retriever: RetrieverConfig,
        reranker: RerankerConfig,
    ) -> None:
        self.embedder = create_embedder(embedder, version_dir)
        self.retriever = FaissRetriever(version_dir, retriever, self.embedder.identity)
        self.reranker = create_reranker(reranker, version_dir)
        self.top_k = retriever.top_k

    def retrieve(self, queries: Sequence[str], batch_size: int = 64) -> Iterator[list[Hit]]:
        for start in range(0, len(queries), batch_size):
            vectors = self.embedder.embed_queries(queries[start : start + batch_size])
            yield from self.retriever.search(vectors, self.top_k)


def pool_questions(paths: Sequence[Path]) -> list[Question]:
    """The questions of several SQuAD-format files, file after file (JaQuAD's dev split
    is four files).

    A paragraph's document id starts with its file's stem, so two files of the same
    stem would mix their paragraphs: they are refused.
    """
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise ValueError(
                f"{stems[path.stem]} and {path}: question files need different names "
                "(a paragraph's id starts with its file's name)"
            )
        stems[path.stem] = path
    return [question for path in paths for question in read_questions(path)]


def evaluate_retrieval(
    pipeline: Pipeline, questions: Sequence[Question], progress: bool = True
) -> tuple[RetrievalScores, RetrievalScores]:
    """Gold ranks after the first stage alone, and after reranking its candidates."""
    first, reranked = RetrievalScores(), RetrievalScores()
    texts = [q.question for q in questions]
    bar = tqdm(total=len(questions), desc="questions", disable=not progress)
    for question, hits in zip(questions, pipeline.retrieve(texts), strict=True):
        first.ranks.append(gold_rank(hits, question.doc_id))
        reranked.ranks.append(
            gold_rank(rerank_hits(pipeline.reranker, question.question, hits), question.doc_id)
        )
        bar.update(1)
    bar.close()
    return first, reranked


def evaluate_answers(
    pipeline: Pipeline,
    generator_config: GeneratorConfig,
    questions: Sequence[Question],
    top_n: int,
    progress: bool = True,
) -> AnswerScores:
    generator = create_generator(generator_config)
    scores = AnswerScores()
    texts = [q.question for q in questions]
    titles = {p.doc_id: p.title for p in pipeline.retriever.passages}
    bar = tqdm(total=len(questions), desc="questions", disable=not progress)
    for question, hits in zip(questions, pipeline.retrieve(texts), strict=True):
        top = rerank_hits(pipeline.reranker, question.question, hits)[:top_n]
        request = GenerationRequest(
            messages=[ChatTurn("user", question.question)], passages=[h.passage for h in top]
        )
        answer = asyncio.run(_collect(generator.generate(request)))
        prose = _CITATION.sub("", answer)
        scores.contained.append(contains_answer(prose, question.answers))
        scores.f1.append(max((char_f1(prose, g) for g in question.answers), default=0.0))
        scores.lengths.append(len(prose))
        scores.sentences.append(len(split_sentences(prose)))
        scores.named.append(names(prose, title_subject(titles.get(question.doc_id, ""))))
        bar.update(1)
    bar.close()
    return scores


def contains_answer(prose: str, answers: Sequence[str]) -> bool:
    """Whether one of the gold ``answers`` occurs in ``prose``, after normalisation."""
    squashed = _squash(prose)
    return any(_squash(g) in squashed for g in answers)


def char_f1(prediction: str, gold: str) -> float:
    """F1 of the character multisets of prediction and gold, after normalisation."""
    p, g = Counter(_squash(prediction)), Counter(_squash(gold))
    common = sum((p & g).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def _squash(text: str) -> str:
    """Normalised text without spaces or punctuation, for answer matching."""
    return "".join(
        ch
        for ch in normalize(text)
        if not ch.isspace() and not unicodedata.category(ch).startswith("P")
    )


async def _collect(stream) -> str:  # type: ignore[no-untyped-def]
    return "".join([piece.text async for piece in stream])
