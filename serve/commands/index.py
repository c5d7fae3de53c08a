"""``jarag index``: build, import, inspect and switch index versions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deployments.embedder.config import (
    PREFIX_PRESETS,
    EmbedderConfig,
    SentenceTransformersEmbedderConfig,
)
from deployments.index.format import (
    list_versions,
    read_manifest,
    resolve_version_dir,
    set_current,
)
from serve.commands.common import add_config_options, app_config
from serve.indexing.build import BuildSettings, build_index
from serve.indexing.corpus import CorpusProblems
from serve.indexing.importing import DeclaredEmbedder, ImportSettings, import_index


def register(commands: Any) -> None:
    index = commands.add_parser("index", help="build and manage index directories")
    index_commands = index.add_subparsers(required=True, metavar="ACTION")
    build = index_commands.add_parser(
        "build", help="embed documents into a new index version (published atomically)"
    )
    build.add_argument(
        "sources",
        nargs="+",
        type=Path,
        help="corpus files or folders of them: .jsonl (plain, .gz, .bz2, .xz, .zst; the "
        "wikipedia-utils passages too), .parquet, SQuAD .json, .txt, .md",
    )
    build.add_argument("--out", type=Path, required=True, help="index root directory")
    add_config_options(build)
    build.add_argument(
        "--faiss-factory",
        default="Flat",
        help="FAISS index_factory string, or 'auto': chosen from the passage count and "
        "--ram-budget-gib (Flat, HNSW32, IVF-SQ8, then IVF-PQ re-scored against "
        "memory-mapped full vectors; docs/wikipedia.md)",
    )
    build.add_argument(
        "--ram-budget-gib",
        type=float,
        default=8.0,
        help="RAM a Retriever replica may give the index (for --faiss-factory auto)",
    )
    build.add_argument("--max-chars", type=int, default=500, help="longest passage, in characters")
    build.add_argument("--overlap-chars", type=int, default=100, help="overlap between chunks")
    build.add_argument("--batch-size", type=int, default=256, help="passages per embedder call")
    build.add_argument(
        "--train-size", type=int, default=100_000, help="vectors that train an IVF/PQ index"
    )
    build.add_argument(
        "--no-activate", action="store_true", help="publish without making it the served version"
    )
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first malformed corpus record (default: skip it with a warning)",
    )
    ray = build.add_argument_group("embedding over a Ray cluster (Ray Data)")
    ray.add_argument("--ray", action="store_true", help="embed with an actor pool on a Ray cluster")
    ray.add_argument("--ray-address", help="cluster address (default: RAY_ADDRESS or local)")
    ray.add_argument("--actors", type=int, default=2, help="embedder actors in the pool")
    ray.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs per actor")
    ray.add_argument(
        "--actor-gpus", type=float, default=0.0, help="GPU share per actor (0.25: four per GPU)"
    )
    ray.add_argument(
        "--shard-rows",
        type=int,
        default=50_000,
        help="passages per shard file; a build killed part-way resumes from the shards written",
    )
    build.set_defaults(run=_build)

    imported = index_commands.add_parser(
        "import",
        help="make a version from vectors made elsewhere: a FAISS index file or .npy/.npz "
        "vectors, with the passages they were made from (row i is vector i)",
    )
    imported.add_argument(
        "passages", type=Path, help="the passages, one record a row in vector order (.jsonl, ...)"
    )
    given = imported.add_mutually_exclusive_group(required=True)
    given.add_argument("--faiss", type=Path, help="FAISS index file built from the vectors")
    given.add_argument("--vectors", type=Path, help=".npy or .npz file of the vectors")
    imported.add_argument("--out", type=Path, required=True, help="index root directory")
    declared = imported.add_argument_group(
        "the embedder that made the vectors (default: the one of --config, or the built-in)"
    )
    add_config_options(declared)
    declared.add_argument("--dimension", type=int, required=True, help="length of every vector")
    declared.add_argument("--model", help="sentence-transformers model id or directory")
    declared.add_argument("--revision", help="hub revision of --model")
    declared.add_argument(
        "--prefix-preset",
        choices=sorted(PREFIX_PRESETS),
        help="query/passage prefixes of the model family",
    )
    declared.add_argument("--query-prefix", help="text put before every query")
    declared.add_argument("--passage-prefix", help="text put before every passage")
    declared.add_argument(
        "--no-normalize", action="store_true", help="the vectors are not L2-normalised"
    )
    declared.add_argument(
        "--max-seq-length", type=int, help="the model's token limit (its max_seq_length)"
    )
    imported.add_argument(
        "--faiss-factory", default="Flat", help="FAISS index_factory string for --vectors"
    )
    imported.add_argument(
        "--train-size", type=int, default=100_000, help="vectors that train an IVF/PQ index"
    )
    imported.add_argument(
        "--no-activate", action="store_true", help="publish without making it the served version"
    )
    imported.add_argument("--quiet", action="store_true", help="no progress bars")
    imported.set_defaults(run=_import)

    info = index_commands.add_parser("info", help="show an index's versions and manifest")
    info.add_argument("path", type=Path)
    info.add_argument("--verify", action="store_true", help="also check every file's checksum")
    info.set_defaults(run=_info)

    use = index_commands.add_parser("use", help="make another version the served one (rollback)")
    use.add_argument("path", type=Path)
    use.add_argument("version")
    use.set_defaults(run=_use)


def _build(args: argparse.Namespace) -> int:
    config = app_config(args)
    settings = BuildSettings.model_validate(
        {
            "faiss_factory": args.faiss_factory,
            "ram_budget_gib": args.ram_budget_gib,
            "chunking": {"max_chars": args.max_chars, "overlap_chars": args.overlap_chars},
            "batch_size": args.batch_size,
            "train_size": args.train_size,
            "make_current": not args.no_activate,
            "progress": not args.quiet,
            "strict": args.strict,
            "ray": {
                "address": args.ray_address,
                "actors": args.actors,
                "num_cpus": args.actor_cpus,
                "num_gpus": args.actor_gpus,
                "shard_rows": args.shard_rows,
            }
            if args.ray
            else None,
        }
    )
    problems = CorpusProblems()
    manifest = build_index(args.sources, args.out, config.embedder, settings, problems)
    state = "now served" if settings.make_current else "not activated"
    skipped = (
        f"; {problems.count} malformed records skipped (warnings above; --strict fails on them)"
        if problems.count
        else ""
    )
    print(
        f"built index version {manifest.version} in {args.out}: {manifest.num_passages} passages "
        f"from {manifest.num_documents} documents, embedder {manifest.embedder.model} "
        f"({manifest.embedder.dimension} dims), FAISS {manifest.faiss_factory} ({state}){skipped}"
    )
    return 0


_MODEL_OPTIONS = ("revision", "prefix_preset", "query_prefix", "passage_prefix")


def _import(args: argparse.Namespace) -> int:
    if args.model is not None:
        given = {k: getattr(args, k) for k in _MODEL_OPTIONS if getattr(args, k) is not None}
        config: EmbedderConfig = SentenceTransformersEmbedderConfig.model_validate(
            {
                "backend": "sentence-transformers",
                "model": args.model,
                "normalize": not args.no_normalize,
                "max_seq_length": args.max_seq_length,
                **given,
            }
        )
    else:
        stray = [f"--{k.replace('_', '-')}" for k in _MODEL_OPTIONS if getattr(args, k)]
        if stray or args.no_normalize:
            raise ValueError(f"{', '.join(stray) or '--no-normalize'} needs --model")
        config = app_config(args).embedder
    embedder = DeclaredEmbedder(
        config=config, dimension=args.dimension, max_seq_length=args.max_seq_length
    )
    settings = ImportSettings(
        faiss_factory=args.faiss_factory,
        train_size=args.train_size,
        make_current=not args.no_activate,
        progress=not args.quiet,
    )
    manifest = import_index(
        args.passages,
        args.out,
        embedder,
        faiss_index=args.faiss,
        vectors=args.vectors,
        settings=settings,
    )
    state = "now served" if settings.make_current else "not activated"
    print(
        f"imported index version {manifest.version} in {args.out}: {manifest.num_passages} "
        f"passages, embedder {manifest.embedder.model} ({manifest.embedder.dimension} dims), "
        f"FAISS {manifest.faiss_factory} ({state})"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    version_dir = resolve_version_dir(args.path)
    manifest = read_manifest(version_dir, verify=args.verify)
    print(
        json.dumps(
            {
                "served_version": manifest.version,
                "versions": list_versions(args.path.resolve()),
                "checksums": "verified" if args.verify else "not checked (use --verify)",
                "manifest": manifest.model_dump(),
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    return 0


def _use(args: argparse.Namespace) -> int:
    root = args.path.resolve()
    read_manifest(root / "versions" / args.version, verify=True)
    set_current(root, args.version)
    print(f"{root} now serves version {args.version}; redeploy (serve deploy) to pick it up")
    return 0
