"""``jarag bench``: speed measurements run against real Serve deployments."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from deployments.extras import require
from serve.bench import autoscale, engine_throughput, index_types, vllm_streaming
from serve.bench.model_batching import BatchingBenchmark, run
from serve.bench.random_models import ENCODER_SHAPES
from serve.bench.report import REPORT_END, REPORT_START
from serve.bench.scale import ScaleSettings
from serve.bench.suite import QUICK as QUICK_SUITE
from serve.bench.suite import SECTIONS, SuiteSettings, launch
from serve.config_file import find_application, load_serve_config

QUICK = BatchingBenchmark(shape="tiny", text_tokens=64, seconds=0.3, documents_per_rerank=2)
"""A smoke run in seconds (the test suite's); its figures are not meaningful."""

BENCH_EXTRA = ("matplotlib", "psutil", "aiohttp", "uvicorn")
"""Modules of the ``bench`` extra (pyproject.toml), checked before a suite run starts."""


def register(commands: Any) -> None:
    bench = commands.add_parser("bench", help="measure serving speed")
    bench_commands = bench.add_subparsers(required=True, metavar="WHAT")
    _register_suite(bench_commands)
    batching = bench_commands.add_parser(
        "batching",
        help="Embedder and Reranker throughput at 1, 8 and 32 concurrent requests, with "
        "dynamic batching on and off, side by side",
    )
    defaults = BatchingBenchmark()
    batching.add_argument(
        "--shape",
        choices=sorted(ENCODER_SHAPES),
        default=defaults.shape,
        help="random-weight BERT shape (ruri-large: the production models' shape)",
    )
    batching.add_argument(
        "--text-tokens", type=int, default=defaults.text_tokens, help="tokens per text"
    )
    batching.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(defaults.concurrency),
        help="requests kept in flight",
    )
    batching.add_argument(
        "--seconds", type=float, default=defaults.seconds, help="measured time per point"
    )
    batching.add_argument(
        "--documents",
        type=int,
        default=defaults.documents_per_rerank,
        help="documents per rerank request",
    )
    batching.add_argument(
        "--max-batch-size", type=int, default=defaults.max_batch_size, help="texts per batch"
    )
    batching.add_argument("--device", choices=("cpu", "cuda"), default=defaults.device)
    batching.add_argument(
        "--cpus", type=int, default=defaults.num_cpus, help="CPUs (PyTorch threads) of the replica"
    )
    batching.add_argument(
        "--quick", action="store_true", help="a few seconds with the tiny model (a smoke test)"
    )
    batching.set_defaults(run=_batching)
    engines = bench_commands.add_parser(
        "engines",
        help="the Embedder's and Reranker's engines alone on random-weight models "
        "(ruri-large's shape by default): passages per second per batch size and their share "
        "of the GPU's bf16 peak (no Ray needed: python -m serve.bench.engine_throughput)",
    )
    engine_throughput.add_arguments(engines)
    engines.set_defaults(run=engine_throughput.run)
    index = bench_commands.add_parser(
        "index",
        help="FAISS index types side by side (Flat, IVF-PQ re-scored against memory-mapped "
        "full vectors, IVF-PQ alone, IVF-SQ8, HNSW32) on synthetic clustered vectors: build "
        "time, RAM per vector, latency, throughput, recall@10, and each extrapolated to "
        "Japanese Wikipedia's 5.3M passages (no Ray needed: python -m serve.bench.index_types)",
    )
    index_types.add_arguments(index)
    index.set_defaults(run=index_types.main)
    streaming = bench_commands.add_parser(
        "vllm",
        help="streamed output tokens per second and time to first token at 1, 8 and 32 "
        "concurrent streams, through the graph's chat endpoint against vLLM's own OpenAI "
        "server on the same tiny model with the same engine settings, and the Generator "
        "deployment alone through a handle (needs vLLM: make bench-vllm)",
    )
    vllm_streaming.add_arguments(streaming)
    streaming.set_defaults(run=vllm_streaming.main)
    _register_autoscale(bench_commands)


def _batching(args: argparse.Namespace) -> int:
    if args.quick:
        settings = dataclasses.replace(QUICK, concurrency=tuple(args.concurrency))
    else:
        settings = BatchingBenchmark(
            shape=args.shape,
            text_tokens=args.text_tokens,
            concurrency=tuple(args.concurrency),
            seconds=args.seconds,
            documents_per_rerank=args.documents,
            max_batch_size=args.max_batch_size,
            device=args.device,
            num_cpus=args.cpus,
        )
    run(settings, sys.stdout)
    return 0


def _register_suite(bench_commands: Any) -> None:
    suite = bench_commands.add_parser(
        "run",
        help="the whole suite in one run (make bench): graph overhead, streaming, batching, "
        "retrieval and index scale, written as JSON, Markdown and PNG plots",
    )
    defaults = SuiteSettings()
    suite.add_argument(
        "--out",
        type=Path,
        default=defaults.out_dir,
        help="the results go to a new directory in it, named by the start time (UTC)",
    )
    suite.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="what to measure (default: everything)",
    )
    suite.add_argument("--runs", type=int, default=defaults.runs, help="runs per point")
    suite.add_argument(
        "--seconds", type=float, default=defaults.seconds, help="measured seconds per run"
    )
    suite.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(defaults.concurrency),
        help="concurrent clients of the graph-overhead section",
    )
    suite.add_argument(
        "--scale-sizes",
        type=int,
        nargs="+",
        default=list(defaults.scale.sizes),
        help="documents of the synthetic corpora of the scale section",
    )
    suite.add_argument(
        "--data",
        type=Path,
        default=defaults.data_dir,
        help="directory with jsquad/ and jaquad/ (the benchmark of record)",
    )
    suite.add_argument(
        "--config",
        type=Path,
        help="Serve config whose stage settings and deployments: options to use "
        "(default: the built-in stages)",
    )
    suite.add_argument("--app", help="application name in --config, if it has several")
    suite.add_argument(
        "--no-models",
        action="store_true",
        help="skip the batching figures of random-weight sentence-transformers models",
    )
    suite.add_argument(
        "--report",
        type=Path,
        help="also write the report into this Markdown page, between its lines "
        f"{REPORT_START} and {REPORT_END} (make bench: docs/performance.md)",
    )
    suite.add_argument(
        "--quick", action="store_true", help="every section in seconds (a smoke test)"
    )
    suite.set_defaults(run=_suite)


def _suite(args: argparse.Namespace) -> int:
    for module in BENCH_EXTRA:
        require(module, "bench", "jarag bench run")
    if args.quick and args.report is not None:
        raise SystemExit("--report: the quick mode's figures are not meaningful enough to publish")
    app: dict[str, Any] = {}
    deployments: dict[str, dict[str, Any]] = {}
    if args.config is not None:
        entry = find_application(load_serve_config(args.config), args.config, args.app)
        app = {k: v for k, v in (entry.get("args") or {}).items() if k != "index"}
        deployments = {
            d["name"]: {k: v for k, v in d.items() if k != "name"}
            for d in entry.get("deployments") or []
        }
    base = QUICK_SUITE if args.quick else SuiteSettings()
    settings = dataclasses.replace(
        base,
        out_dir=args.out,
        sections=tuple(args.sections),
        data_dir=args.data,
        app=app,
        deployments=deployments,
        models=base.models and not args.no_models,
        report=args.report,
    )
    if not args.quick:
        settings = dataclasses.replace(
            settings,
            runs=args.runs,
            seconds=args.seconds,
            concurrency=tuple(args.concurrency),
            scale=ScaleSettings(sizes=tuple(args.scale_sizes)),
        )
    return launch(settings)


def _register_autoscale(bench_commands: Any) -> None:
    parser = bench_commands.add_parser(
        "autoscale",
        help="on a multi-node local cluster: time from a load step to the first added "
        "replica serving and from the load's end to the scale-down, per stage, and the "
        "end-to-end latency before, during and after the scale-up",
        description="Starts a local Ray cluster (a head without GPUs and worker nodes that "
        "declare GPUs), deploys the graph with serve_config.yaml's resource shape and the "
        "built-in stages (Embedder and Reranker paced to a fixed time per item), steps a "
        "loopback load up and stops it, and prints what the autoscaler did.",
    )
    full, quick = autoscale.AutoscaleBenchmark(), autoscale.QUICK
    parser.add_argument(
        "--serve-config",
        type=Path,
        default=full.serve_config,
        help="Serve config whose deployments: section (GPU fractions, autoscaling) to use",
    )
    parser.add_argument(
        "--workers", type=int, help=f"GPU worker nodes (default {full.shape.gpu_workers})"
    )
    parser.add_argument(
        "--heavy",
        type=int,
        help=f"requests in flight after the step (default {full.heavy_concurrency}; "
        f"{quick.heavy_concurrency} with --quick)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        help=f"seconds of load after the scale-up (default {full.after_s:g}; "
        f"{quick.after_s:g} with --quick)",
    )
    parser.add_argument(
        "--item-ms",
        type=float,
        help="stand-in model time per embedded text and per rerank request (default "
        f"{full.embed_seconds_per_text * 1000:g}; {quick.embed_seconds_per_text * 1000:g} "
        "with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="delays of a few seconds instead of serve_config.yaml's (about a minute; the "
        "test suite's smoke run)",
    )
    parser.set_defaults(run=_autoscale)


def _autoscale(args: argparse.Namespace) -> int:
    settings = autoscale.QUICK if args.quick else autoscale.AutoscaleBenchmark()
    settings = dataclasses.replace(settings, serve_config=args.serve_config)
    if args.workers is not None:
        shape = dataclasses.replace(settings.shape, gpu_workers=args.workers)
        settings = dataclasses.replace(settings, shape=shape)
    if args.heavy is not None:
        settings = dataclasses.replace(settings, heavy_concurrency=args.heavy)
    if args.hold is not None:
        settings = dataclasses.replace(settings, after_s=args.hold)
    if args.item_ms is not None:
        seconds = args.item_ms / 1000
        settings = dataclasses.replace(
            settings, embed_seconds_per_text=seconds, rerank_seconds_per_request=seconds
        )
    autoscale.run(settings, sys.stdout)
    return 0
