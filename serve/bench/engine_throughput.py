"""Encoder throughput of the engines alone, against the device's dense bf16 peak.

The Embedder's and the Reranker's engines (``SentenceTransformerEmbedder``,
``CrossEncoderReranker``) run random-weight models of a chosen shape, built
locally, on texts of exactly ``text_tokens`` tokens, one batch at a time. The
report gives passages per second per batch size, the matrix-multiply FLOP/s that
rate implies, and its share of the device's peak. Only PyTorch, transformers and
sentence-transformers are needed (no Ray), so it runs on a GPU machine with just
those: ``python -m serve.bench.engine_throughput --device cuda``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from deployments.embedder.config import SentenceTransformersEmbedderConfig
from deployments.embedder.sentence_transformers import SentenceTransformerEmbedder
from deployments.reranker.config import CrossEncoderRerankerConfig
from deployments.reranker.cross_encoder import CrossEncoderReranker
from deployments.torch_runtime import DType
from serve.bench import random_models
from serve.bench.machine import machine_summary
from serve.bench.random_models import ENCODER_SHAPES, EncoderShape

ENGINES = ("Embedder", "Reranker")

DENSE_BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    # NVIDIA datasheet figures without sparsity; the first name found in the device's wins.
    ("H200 NVL", 835.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


@dataclass(frozen=True)
class EngineThroughputSettings:
    shape: str = "ruri-large"
    """Encoder shape from ``random_models.ENCODER_SHAPES``."""
    text_tokens: int = 256
    """Tokens of every sequence the model sees (a reranker pair counts once)."""
    batch_sizes: tuple[int, ...] = (1, 32, 128)
    seconds: float = 10.0
    """Measured time per (engine, batch size) point, after a warm-up call."""
    device: Literal["cpu", "cuda"] = "cuda"
    dtype: DType = "bfloat16"
    peak_tflops: float | None = None
    """The device's peak; None: looked up by the GPU's name (unknown on a CPU)."""


@dataclass(frozen=True)
class ThroughputPoint:
    engine: str
    batch_size: int
    batches: int
    seconds: float
    flops_per_text: float

    @property
    def passages_per_s(self) -> float:
        return self.batches * self.batch_size / self.seconds if self.seconds else 0.0

    @property
    def tflops(self) -> float:
        return self.passages_per_s * self.flops_per_text / 1e12


def encoder_flops(shape: EncoderShape, tokens: int) -> float:
    """Matrix-multiply FLOPs of one BERT encoder pass over ``tokens`` tokens: the Q, K, V
    and output projections (4h^2 per token), the feed-forward block (2hI per token) and
    attention's two products (2 * tokens^2 * h each), at 2 FLOPs per multiply-add. The
    usual count for model FLOPs utilisation: embeddings, norms, softmax and pooling are
    left out."""
    h, inner = shape.hidden_size, shape.intermediate_size
    per_layer = 2 * tokens * (4 * h * h + 2 * h * inner) + 4 * tokens * tokens * h
    return float(shape.layers * per_layer)


def dense_bf16_peak_tflops(device_name: str) -> float | None:
    """The datasheet's dense bf16 TFLOP/s of a known NVIDIA GPU, else None."""
    for name, peak in DENSE_BF16_PEAK_TFLOPS:
        if name in device_name:
            return peak
    return None


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: PyTorch sees no CUDA GPU here (use --device cpu)")
        return str(torch.cuda.get_device_name(0))
    from serve.bench.machine import cpu_model

    return f"CPU ({cpu_model()})"


def measure(settings: EngineThroughputSettings, work: Path) -> list[ThroughputPoint]:
    """Build both models under ``work`` and time every batch size of both engines."""
    shape = ENCODER_SHAPES[settings.shape]
    if settings.text_tokens > shape.max_positions:
        raise ValueError(
            f"--text-tokens {settings.text_tokens} exceeds the '{settings.shape}' shape's "
            f"{shape.max_positions} positions"
        )
    sentences = random_models.corpus_sentences()
    tokenizer = random_models.wordpiece_tokenizer(sentences)
    texts = random_models.texts_over(
        tokenizer, sentences, settings.text_tokens, max(settings.batch_sizes)
    )
    flops = encoder_flops(shape, settings.text_tokens)
    largest = max(settings.batch_sizes)
    embedder = SentenceTransformerEmbedder(
        SentenceTransformersEmbedderConfig(
            backend="sentence-transformers",
            model=str(random_models.build_embedder(work / "embedder", tokenizer, shape)),
            prefix_preset="none",
            max_seq_length=settings.text_tokens,
            max_batch_size=largest,
            device=settings.device,
            dtype=settings.dtype,
        )
    )
    reranker = CrossEncoderReranker(
        CrossEncoderRerankerConfig(
            backend="cross-encoder",
            model=str(random_models.build_cross_encoder(work / "reranker", tokenizer, shape)),
            max_seq_length=settings.text_tokens,
            max_batch_size=largest,
            device=settings.device,
            dtype=settings.dtype,
        )
    )
    _check_lengths(tokenizer, texts, settings.text_tokens)
    question = sentences[0]
    calls: dict[str, Callable[[list[str]], object]] = {
        "Embedder": embedder.embed_passages,
        "Reranker": lambda batch: reranker.score(question, batch),
    }
    points = []
    for engine in ENGINES:
        for size in settings.batch_sizes:
            batches, elapsed = _time_batches(calls[engine], texts, size, settings.seconds)
            points.append(ThroughputPoint(engine, size, batches, elapsed, flops))
    return points


def _check_lengths(tokenizer: Any, texts: Sequence[str], tokens: int) -> None:
    """Every text, and every question-text pair, is cut to exactly ``tokens`` tokens (the
    FLOP count assumes it)."""
    single = tokenizer(list(texts), truncation=True, max_length=tokens)["input_ids"]
    pairs = tokenizer(["質問"] * len(texts), list(texts), truncation=True, max_length=tokens)[
        "input_ids"
    ]
    lengths = {len(ids) for ids in [*single, *pairs]}
    if lengths != {tokens}:
        raise RuntimeError(f"texts of {sorted(lengths)} tokens, expected {tokens}")


def _time_batches(
    call: Callable[[list[str]], object], texts: list[str], size: int, seconds: float
) -> tuple[int, float]:
    """Batches of ``size`` texts run back to back for ``seconds`` (at least one); the
    engines return NumPy arrays, so each call has finished on the device when it returns."""

    def batch(number: int) -> list[str]:
        return [texts[(number * size + k) % len(texts)] for k in range(size)]

    call(batch(0))  # warm-up: kernels chosen, memory allocated
    batches = 0
    started = time.perf_counter()
    while True:
        call(batch(batches))
        batches += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return batches, elapsed


def print_report(
    settings: EngineThroughputSettings,
    points: Sequence[ThroughputPoint],
    device: str,
    out: TextIO,
) -> None:
    shape = ENCODER_SHAPES[settings.shape]
    peak = settings.peak_tflops or dense_bf16_peak_tflops(device)
    print("ja-rag-serve engine throughput (the engines alone, no serving)", file=out)
    for line in machine_summary(("torch", "transformers", "sentence-transformers")):
        print(line, file=out)
    print(
        f"device: {device}; model: random BERT '{settings.shape}' (hidden {shape.hidden_size}, "
        f"{shape.layers} layers, {shape.heads} heads) in {settings.dtype}; every sequence "
        f"{settings.text_tokens} tokens (a reranker pair: question + passage); "
        f"{points[0].flops_per_text / 1e9:.3g} GFLOP per sequence; {settings.seconds:g} s "
        "per point",
        file=out,
    )
    if peak is None:
        print(
            "peak: unknown for this device (give it with --peak-tflops); the share column "
            "is left empty",
            file=out,
        )
    else:
        source = "given" if settings.peak_tflops else "dense bf16, datasheet"
        print(f"peak: {peak:g} TFLOP/s ({source})", file=out)
    header = f"{'engine':<9} {'batch':>6} | {'passages/s':>11} {'ms/batch':>9} {'TFLOP/s':>8}"
    header += f" {'of peak':>8}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for p in points:
        share = f"{p.tflops / peak:.1%}" if peak else "-"
        print(
            f"{p.engine:<9} {p.batch_size:>6} | {p.passages_per_s:>11.1f} "
            f"{p.seconds / p.batches * 1000:>9.2f} {p.tflops:>8.3g} {share:>8}",
            file=out,
        )


def results(
    settings: EngineThroughputSettings, points: Sequence[ThroughputPoint], device: str
) -> dict[str, Any]:
    peak = settings.peak_tflops or dense_bf16_peak_tflops(device)
    return {
        "settings": asdict(settings),
        "device": device,
        "peak_tflops": peak,
        "points": [
            {
                **asdict(p),
                "passages_per_s": p.passages_per_s,
                "tflops": p.tflops,
                "share_of_peak": p.tflops / peak if peak else None,
            }
            for p in points
        ],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EngineThroughputSettings()
    parser.add_argument(
        "--shape",
        choices=sorted(ENCODER_SHAPES),
        default=defaults.shape,
        help="random-weight BERT shape (ruri-large: ruri-large's and ruri-reranker-large's)",
    )
    parser.add_argument(
        "--text-tokens", type=int, default=defaults.text_tokens, help="tokens per sequence"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=list(defaults.batch_sizes),
        help="texts per engine call",
    )
    parser.add_argument(
        "--seconds", type=float, default=defaults.seconds, help="measured time per point"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=defaults.device)
    parser.add_argument(
        "--dtype", choices=("float32", "float16", "bfloat16"), default=defaults.dtype
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's peak TFLOP/s (default: the datasheet's dense bf16 figure of a "
        "known NVIDIA GPU)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    settings = EngineThroughputSettings(
        shape=args.shape,
        text_tokens=args.text_tokens,
        batch_sizes=tuple(args.batch_sizes),
        seconds=args.seconds,
        device=args.device,
        dtype=args.dtype,
        peak_tflops=args.peak_tflops,
    )
    device = device_name(settings.device)
    with tempfile.TemporaryDirectory(prefix="jarag-engines-") as scratch:
        points = measure(settings, Path(scratch))
    print_report(settings, points, device, out)
    if args.json is not None:
        args.json.write_text(json.dumps(results(settings, points, device), indent=2) + "\n")
        print(f"written: {args.json}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serve.bench.engine_throughput", description=__doc__
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
