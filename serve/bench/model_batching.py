"""Dynamic batching, measured: Embedder and Reranker throughput with batching on and off.

Each stage runs as its real Serve deployment (the same class, config and
``@serve.batch`` path as in the graph) on a local Ray instance, with a randomly
initialised model of a chosen shape built locally. A bounded client keeps exactly
``concurrency`` requests in flight through a DeploymentHandle for a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np

from deployments.embedder.config import SentenceTransformersEmbedderConfig
from deployments.embedder.deployment import Embedder
from deployments.embedder.sentence_transformers import SentenceTransformerEmbedder
from deployments.index.format import resolve_version_dir
from deployments.reranker.config import CrossEncoderRerankerConfig
from deployments.reranker.cross_encoder import CrossEncoderReranker
from deployments.reranker.deployment import Reranker
from serve.bench import random_models
from serve.bench.machine import format_load, machine_summary
from serve.bench.random_models import ENCODER_SHAPES
from serve.demo import DEMO_CORPUS, DEMO_QUESTIONS
from serve.indexing.build import BuildSettings, build_index

STAGES = ("Embedder", "Reranker")
VERSIONED_PACKAGES = ("ray", "torch", "transformers", "sentence-transformers", "numpy")


@dataclass(frozen=True)
class BatchingBenchmark:
    """What to measure."""

    shape: str = "tiny"
    """Encoder shape from ``random_models.ENCODER_SHAPES``."""
    text_tokens: int = 128
    """Tokens per text (texts are cut to it), query and document alike."""
    concurrency: tuple[int, ...] = (1, 8, 32)
    seconds: float = 5.0
    """Measured time per (stage, batching, concurrency) point, after a warm-up."""
    documents_per_rerank: int = 4
    max_batch_size: int = 32
    """Texts per embedder batch; the reranker's is this times documents_per_rerank."""
    batch_wait_timeout_s: float = 0.002
    device: Literal["cpu", "cuda"] = "cpu"
    num_cpus: int = 1
    """CPUs the replica reserves; Ray gives PyTorch as many threads."""


@dataclass(frozen=True)
class EngineBaseline:
    """The engine alone, in this process: time per item at a request's size and at a
    full batch. Their ratio is the most batching can gain; the table shows how much
    of it survives the serving path."""

    stage: str
    request_items: int
    request_ms_per_item: float
    batch_items: int
    batch_ms_per_item: float

    @property
    def gain(self) -> float:
        return self.request_ms_per_item / self.batch_ms_per_item if self.batch_ms_per_item else 0.0


@dataclass
class Measurement:
    stage: str
    batching: bool
    concurrency: int
    requests: int
    seconds: float
    items_per_request: int
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def items_per_s(self) -> float:
        return self.requests_per_s * self.items_per_request

    def latency(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0


@dataclass(frozen=True)
class TinyModelStages:
    """Random-weight models built locally, with the stage configs that load them."""

    embedder: SentenceTransformersEmbedderConfig
    reranker: CrossEncoderRerankerConfig
    index: Path
    """A small index built with the embedder (the Embedder deployment checks it)."""
    texts: list[str]
    baselines: list[EngineBaseline]


def prepare(settings: BatchingBenchmark, work: Path) -> TinyModelStages:
    """Build the models under ``work`` and time their engines alone."""
    shape = ENCODER_SHAPES[settings.shape]
    sentences = random_models.corpus_sentences()
    tokenizer = random_models.wordpiece_tokenizer(sentences)
    embedder_dir = random_models.build_embedder(work / "embedder", tokenizer, shape)
    reranker_dir = random_models.build_cross_encoder(work / "reranker", tokenizer, shape)
    texts = random_models.texts_over(tokenizer, sentences, settings.text_tokens)
    embedder_config = _embedder_config(settings, embedder_dir)
    return TinyModelStages(
        embedder_config,
        _reranker_config(settings, reranker_dir),
        _small_index(work, embedder_config),
        texts,
        _engine_baselines(settings, embedder_config, reranker_dir, texts),
    )


def run(settings: BatchingBenchmark, out: TextIO) -> list[Measurement]:
    """Build the models, measure every point, print the table; returns the measurements."""
    import ray
    from ray import serve

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jarag-bench-") as scratch:
        stages = prepare(settings, Path(scratch))
        started_ray = not ray.is_initialized()
        if started_ray:
            # A Ray instance of its own, never one that another user started.
            ray.init(
                address="local",
                include_dashboard=False,
                log_to_driver=False,
                logging_level="WARNING",
            )
        started_serve = not _serve_running()
        if started_serve:
            serve.start(proxy_location="Disabled")
        try:
            results: list[Measurement] = []
            for stage in STAGES:
                results += _measure_deployment(settings, stage, stages)
        finally:
            if started_serve:
                serve.shutdown()
            if started_ray:
                ray.shutdown()
    print_report(settings, results, stages.baselines, (load_before, os.getloadavg()), out)
    return results


def print_report(
    settings: BatchingBenchmark,
    results: Sequence[Measurement],
    baselines: Sequence[EngineBaseline],
    load: tuple[tuple[float, ...], tuple[float, ...]],
    out: TextIO,
) -> None:
    shape = ENCODER_SHAPES[settings.shape]
    print("ja-rag-serve dynamic batching benchmark", file=out)
    for line in machine_summary(VERSIONED_PACKAGES):
        print(line, file=out)
    before, after = (format_load(values) for values in load)
    print(
        f"load average (1, 5, 15 min): {before} before, {after} after (other work on the "
        "machine skews the figures)",
        file=out,
    )
    print(
        f"model: random BERT '{settings.shape}' (hidden {shape.hidden_size}, {shape.layers} "
        f"layers, {shape.heads} heads) on {settings.device}; texts of {settings.text_tokens} "
        f"tokens; rerank requests: a demo question and {settings.documents_per_rerank} texts; "
        f"max_batch_size {settings.max_batch_size}, batch_wait_timeout_s "
        f"{settings.batch_wait_timeout_s}; one replica with {settings.num_cpus} CPU; "
        f"{settings.seconds:g} s per point",
        file=out,
    )
    header = (
        f"{'stage':<9} {'concurrent':>10} | {'batched req/s':>13} {'items/s':>9} {'p50 ms':>8} "
        f"{'p95 ms':>8} | {'unbatched req/s':>15} {'items/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"| {'speedup':>7}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    table = {(m.stage, m.batching, m.concurrency): m for m in results}
    for stage in STAGES:
        for level in settings.concurrency:
            on, off = table[(stage, True, level)], table[(stage, False, level)]
            speedup = on.requests_per_s / off.requests_per_s if off.requests_per_s else 0.0
            print(
                f"{stage:<9} {level:>10} | {on.requests_per_s:>13.1f} {on.items_per_s:>9.1f} "
                f"{on.latency(50):>8.1f} {on.latency(95):>8.1f} | {off.requests_per_s:>15.1f} "
                f"{off.items_per_s:>9.1f} {off.latency(50):>8.1f} {off.latency(95):>8.1f} "
                f"| {speedup:>6.1f}x",
                file=out,
            )
    print("items: texts embedded (Embedder) or (query, document) pairs scored (Reranker)", file=out)
    for b in baselines:
        print(
            f"engine alone, no Serve, {b.stage}: {b.request_ms_per_item:.2f} ms per item "
            f"{b.request_items} at a time, {b.batch_ms_per_item:.2f} ms per item "
            f"{b.batch_items} at a time ({b.gain:.1f}x)",
            file=out,
        )


def _measure_deployment(
    settings: BatchingBenchmark, stage: str, stages: TinyModelStages
) -> list[Measurement]:
    """One replica of ``stage``; batching switched off between the two series through
    the deployment's ``reconfigure`` (what a ``user_config`` change does)."""
    from ray import serve

    largest = max(settings.concurrency)
    options: dict[str, Any] = {
        "num_replicas": 1,
        "ray_actor_options": {
            "num_cpus": settings.num_cpus,
            "num_gpus": 1 if settings.device == "cuda" else 0,
        },
        "max_ongoing_requests": max(largest, settings.max_batch_size) * 2,
    }
    index = str(stages.index)
    if stage == "Embedder":
        app = serve.deployment(Embedder, name=stage, **options).bind(stages.embedder, index)
    else:
        app = serve.deployment(Reranker, name=stage, **options).bind(stages.reranker, index)
    name = f"bench-{stage.lower()}"
    serve.run(app, name=name, route_prefix=None)
    try:
        return asyncio.run(_measure_series(settings, stage, stages, name))
    finally:
        serve.delete(name)


async def _measure_series(
    settings: BatchingBenchmark, stage: str, stages: TinyModelStages, app_name: str
) -> list[Measurement]:
    """Every call on one event loop, through a handle of this loop that is shut down
    with it: in Serve's throughput-optimised mode a handle's router lives on the loop
    that first used it."""
    from ray.serve.handle import DeploymentHandle

    handle: Any = DeploymentHandle(stage, app_name)
    call = _request_maker(handle, stage, stages.texts, _questions(), settings.documents_per_rerank)
    items = 1 if stage == "Embedder" else settings.documents_per_rerank
    results = []
    try:
        for batching in (True, False):
            await handle.reconfigure.remote({"batching": batching})
            for level in settings.concurrency:
                await _drive(call, level, min(settings.seconds, 1.0))  # warm-up
                requests, elapsed, latencies = await _drive(call, level, settings.seconds)
                results.append(
                    Measurement(stage, batching, level, requests, elapsed, items, latencies)
                )
    finally:
        await handle.shutdown_async()
    return results


def _request_maker(
    handle: Any, stage: str, texts: list[str], questions: list[str], documents: int
) -> Callable[[int], Awaitable[Any]]:
    """Embedder: one text per request. Reranker: a question and ``documents`` texts."""

    def call(number: int) -> Awaitable[Any]:
        if stage == "Embedder":
            return handle.embed_query.remote(texts[number % len(texts)])  # type: ignore[no-any-return]
        docs = [texts[(number + i) % len(texts)] for i in range(documents)]
        question = questions[number % len(questions)]
        return handle.score.remote(question, docs)  # type: ignore[no-any-return]

    return call


async def _drive(
    call: Callable[[int], Awaitable[Any]], concurrency: int, seconds: float
) -> tuple[int, float, list[float]]:
    """Keep ``concurrency`` requests in flight for ``seconds``; count the completed ones."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call(next(counter))
            latencies.append((time.perf_counter() - start) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), time.perf_counter() - began, latencies


def _engine_baselines(
    settings: BatchingBenchmark,
    embedder_config: SentenceTransformersEmbedderConfig,
    reranker_dir: Path,
    texts: list[str],
) -> list[EngineBaseline]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.num_cpus)  # as the replica will have
    try:
        embedder = SentenceTransformerEmbedder(embedder_config)
        reranker = CrossEncoderReranker(_reranker_config(settings, reranker_dir))
        question = _questions()[0]
        docs = settings.documents_per_rerank
        pairs = settings.max_batch_size * docs

        def embed(n: int) -> Callable[[int], object]:
            return lambda i: embedder.embed_queries([texts[(i + k) % len(texts)] for k in range(n)])

        def score(n: int) -> Callable[[int], object]:
            return lambda i: reranker.score(
                question, [texts[(i + k) % len(texts)] for k in range(n)]
            )

        return [
            EngineBaseline(
                "Embedder",
                1,
                _ms_per_call(embed(1)),
                settings.max_batch_size,
                _ms_per_call(embed(settings.max_batch_size)) / settings.max_batch_size,
            ),
            EngineBaseline(
                "Reranker",
                docs,
                _ms_per_call(score(docs)) / docs,
                pairs,
                _ms_per_call(score(pairs)) / pairs,
            ),
        ]
    finally:
        torch.set_num_threads(threads)


def _ms_per_call(call: Callable[[int], object], repeats: int = 5) -> float:
    call(0)  # warm-up
    started = time.perf_counter()
    for i in range(repeats):
        call(i)
    return (time.perf_counter() - started) / repeats * 1000


def _questions() -> list[str]:
    path = DEMO_QUESTIONS
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def _serve_running() -> bool:
    from ray import serve

    try:
        serve.status()
    except Exception:
        return False
    return True


def _embedder_config(
    settings: BatchingBenchmark, model: Path
) -> SentenceTransformersEmbedderConfig:
    return SentenceTransformersEmbedderConfig(
        backend="sentence-transformers",
        model=str(model),
        prefix_preset="ruri-v1",
        max_seq_length=settings.text_tokens,
        max_batch_size=settings.max_batch_size,
        batch_wait_timeout_s=settings.batch_wait_timeout_s,
        device=settings.device,
    )


def _reranker_config(settings: BatchingBenchmark, model: Path) -> CrossEncoderRerankerConfig:
    shape = ENCODER_SHAPES[settings.shape]
    return CrossEncoderRerankerConfig(
        backend="cross-encoder",
        model=str(model),
        # Room for the question next to a whole text, within the model's positions.
        max_seq_length=min(settings.text_tokens + 32, shape.max_positions),
        max_batch_size=settings.max_batch_size * settings.documents_per_rerank,
        batch_wait_timeout_s=settings.batch_wait_timeout_s,
        device=settings.device,
    )


def _small_index(work: Path, config: SentenceTransformersEmbedderConfig) -> Path:
    """The Embedder deployment checks its index's embedder: give it a tiny one."""
    corpus = work / "corpus.jsonl"
    lines = DEMO_CORPUS.read_text(encoding="utf-8").splitlines()[:8]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    root = work / "index"
    build_index([corpus], root, config, BuildSettings(progress=False))
    return resolve_version_dir(root)
