"""The indexes the benchmarks run over: the bundled demo corpus, the retrieval
benchmark of record (built from the shared data at run time, never copied into the
project), and synthetic corpora of any size."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deployments.embedder.config import EmbedderConfig
from deployments.index.format import resolve_version_dir
from deployments.text import split_sentences
from serve.demo import DEMO_CORPUS, DEMO_QUESTIONS
from serve.indexing.build import BuildSettings, build_index
from serve.indexing.corpus import read_documents, read_questions

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
"""Where the benchmark-of-record data lives (see its README): ``../shared/data``."""


@dataclass(frozen=True)
class BenchIndex:
    name: str
    version_dir: Path
    passages: int
    documents: int
    questions: list[str]
    build_s: float
    factory: str


def demo_questions() -> list[str]:
    lines = DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def record_sources(data_dir: Path) -> tuple[Path, list[Path]] | None:
    """JSQuAD valid (questions and gold paragraphs) and the JaQuAD train files
    (distractors), or None when the data is not there."""
    questions = data_dir / "jsquad" / "valid-v1.3.json"
    distractors = sorted((data_dir / "jaquad").glob("train_*.json"))
    if not questions.is_file() or not distractors:
        return None
    return questions, distractors


def build(
    name: str,
    sources: Sequence[Path],
    root: Path,
    embedder: EmbedderConfig,
    questions: list[str],
    settings: BuildSettings | None = None,
) -> BenchIndex:
    settings = settings or BuildSettings(progress=False)
    started = time.perf_counter()
    manifest = build_index(list(sources), root, embedder, settings)
    return BenchIndex(
        name,
        resolve_version_dir(root),
        manifest.num_passages,
        manifest.num_documents,
        questions,
        time.perf_counter() - started,
        manifest.faiss_factory,
    )


def demo_index(root: Path, embedder: EmbedderConfig) -> BenchIndex:
    return build("demo", [DEMO_CORPUS], root, embedder, demo_questions())


def record_index(
    root: Path, embedder: EmbedderConfig, data_dir: Path, distractor_files: int | None = None
) -> BenchIndex | None:
    """JSQuAD valid + the JaQuAD train files as distractors (10,858 documents in all),
    as ``jarag eval`` builds it; its questions are the JSQuAD questions. Fewer
    distractor files make a smaller index (the quick mode's)."""
    sources = record_sources(data_dir)
    if sources is None:
        return None
    questions_file, distractors = sources
    name = "benchmark of record"
    if distractor_files is not None:
        distractors = distractors[:distractor_files]
        name = f"JSQuAD valid + {len(distractors)} JaQuAD file(s)"
    questions = [q.question for q in read_questions(questions_file)]
    return build(name, [questions_file, *distractors], root, embedder, questions)


def write_synthetic_corpus(path: Path, documents: int, seed: int = 0) -> Path:
    """``documents`` distinct passages of 2 to 4 sentences of the demo corpus each, in a
    random mix, with a serial number: Japanese text of realistic length (~200 chars)."""
    sentences = [
        s
        for document in read_documents(DEMO_CORPUS)
        for s in split_sentences(document.text)
        if 10 <= len(s) <= 120
    ]
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for number in range(documents):
            picked = rng.sample(sentences, rng.randint(2, 4))
            text = "".join(picked) + f"整理番号は{number}である。"
            record = {"id": f"s{number}", "title": f"合成文書{number}", "text": text}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
