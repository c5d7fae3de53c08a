"""``jarag bench``: speed measurements run against real Serve deployments."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from serve.benchmark import BatchingBenchmark, run
from serve.random_models import ENCODER_SHAPES

QUICK = BatchingBenchmark(shape="tiny", text_tokens=64, seconds=0.3, documents_per_rerank=2)
"""A smoke run in seconds (the test suite's); its figures are not meaningful."""


def register(commands: Any) -> None:
    bench = commands.add_parser("bench", help="measure serving speed")
    bench_commands = bench.add_subparsers(required=True, metavar="WHAT")
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
