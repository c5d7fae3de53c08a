"""``jarag``: build and inspect indexes, and measure retrieval and answer quality."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from deployments.retriever.config import RetrieverConfig
from deployments.retriever.index_format import (
    InvalidIndexError,
    list_versions,
    read_manifest,
    resolve_version_dir,
    set_current,
)
from serve.config import AppConfig
from serve.config_file import ConfigFileError, load_app_config
from serve.corpus import CorpusError, Question, read_questions
from serve.indexing import BuildSettings, build_index

_USER_ERRORS = (
    ConfigFileError,
    CorpusError,
    InvalidIndexError,
    FileNotFoundError,
    ValidationError,
    ValueError,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except _USER_ERRORS as error:
        print(f"jarag: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jarag: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jarag", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    index = commands.add_parser("index", help="build and manage index directories")
    index_commands = index.add_subparsers(required=True, metavar="ACTION")
    build = index_commands.add_parser(
        "build", help="embed documents into a new index version (published atomically)"
    )
    build.add_argument("sources", nargs="+", type=Path, help=".jsonl passages or SQuAD .json files")
    build.add_argument("--out", type=Path, required=True, help="index root directory")
    _add_config_options(build)
    build.add_argument("--faiss-factory", default="Flat", help="FAISS index_factory string")
    build.add_argument("--max-chars", type=int, default=500, help="longest passage, in characters")
    build.add_argument("--overlap-chars", type=int, default=100, help="overlap between chunks")
    build.add_argument("--batch-size", type=int, default=256, help="passages per embedder call")
    build.add_argument(
        "--no-activate", action="store_true", help="publish without making it the served version"
    )
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(run=_index_build)

    info = index_commands.add_parser("info", help="show an index's versions and manifest")
    info.add_argument("path", type=Path)
    info.add_argument("--verify", action="store_true", help="also check every file's checksum")
    info.set_defaults(run=_index_info)

    use = index_commands.add_parser("use", help="make another version the served one (rollback)")
    use.add_argument("path", type=Path)
    use.add_argument("version")
    use.set_defaults(run=_index_use)

    evaluate = commands.add_parser("eval", help="measure quality on SQuAD-format questions")
    eval_commands = evaluate.add_subparsers(required=True, metavar="WHAT")
    for name, run, what in (
        ("retrieval", _eval_retrieval, "recall@1/5/20 and MRR@10 of each question's gold passage"),
        ("answers", _eval_answers, "answer containment and character F1 of generated answers"),
    ):
        sub = eval_commands.add_parser(name, help=what)
        sub.add_argument("questions", type=Path, help="SQuAD-format .json with the questions")
        sub.add_argument(
            "--distractors", nargs="*", type=Path, default=[], help="more documents to index"
        )
        sub.add_argument(
            "--index-dir", type=Path, help="index root to build into (or reuse with --reuse-index)"
        )
        sub.add_argument(
            "--reuse-index", action="store_true", help="use --index-dir as it is, if present"
        )
        _add_config_options(sub)
        sub.add_argument("--top-k", type=int, default=None, help="candidates for the reranker")
        sub.add_argument("--top-n", type=int, default=None, help="passages given the generator")
        sub.add_argument("--limit", type=int, default=None, help="only the first N questions")
        sub.add_argument("--json", type=Path, help="also write the figures to this JSON file")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        sub.set_defaults(run=run)
    return parser


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="Serve config whose stage settings to use (default: the built-in stages)",
    )
    parser.add_argument("--app", help="application name in --config, if it has several")


def _app_config(args: argparse.Namespace) -> AppConfig:
    if args.config is None:
        return AppConfig.model_validate({"index": {"path": "."}})
    return load_app_config(args.config, args.app)


def _index_build(args: argparse.Namespace) -> int:
    config = _app_config(args)
    settings = BuildSettings.model_validate(
        {
            "faiss_factory": args.faiss_factory,
            "chunking": {"max_chars": args.max_chars, "overlap_chars": args.overlap_chars},
            "batch_size": args.batch_size,
            "make_current": not args.no_activate,
            "progress": not args.quiet,
        }
    )
    manifest = build_index(args.sources, args.out, config.embedder, settings)
    state = "now served" if settings.make_current else "not activated"
    print(
        f"built index version {manifest.version} in {args.out}: {manifest.num_passages} passages "
        f"from {manifest.num_documents} documents, embedder {manifest.embedder.model} "
        f"({manifest.embedder.dimension} dims), FAISS {manifest.faiss_factory} ({state})"
    )
    return 0


def _index_info(args: argparse.Namespace) -> int:
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


def _index_use(args: argparse.Namespace) -> int:
    root = args.path.resolve()
    read_manifest(root / "versions" / args.version, verify=True)
    set_current(root, args.version)
    print(f"{root} now serves version {args.version}; redeploy (serve deploy) to pick it up")
    return 0


def _prepare_eval(args: argparse.Namespace) -> tuple[AppConfig, Path, list[Question]]:
    from serve.evaluation import Pipeline  # noqa: F401  (imported here to fail early)

    config = _app_config(args)
    if args.top_k is not None:
        config = config.model_copy(
            update={
                "retriever": RetrieverConfig.model_validate(
                    {**config.retriever.model_dump(), "top_k": args.top_k}
                )
            }
        )
    questions = list(read_questions(args.questions))[: args.limit]
    if not questions:
        raise ValueError(f"{args.questions} holds no questions")
    root = args.index_dir or Path(tempfile.mkdtemp(prefix="jarag-eval-"))
    if not (args.reuse_index and args.index_dir and root.exists()):
        build_index(
            [args.questions, *args.distractors],
            root,
            config.embedder,
            BuildSettings(progress=not args.quiet),
        )
    return config, resolve_version_dir(root), questions


def _eval_retrieval(args: argparse.Namespace) -> int:
    from serve.evaluation import Pipeline, evaluate_retrieval

    config, version_dir, questions = _prepare_eval(args)
    pipeline = Pipeline(version_dir, config.embedder, config.retriever, config.reranker)
    first, reranked = evaluate_retrieval(pipeline, questions, progress=not args.quiet)
    passages = pipeline.retriever.manifest.num_documents
    reranker = f"{pipeline.reranker.model_name}, top_k={config.retriever.top_k}"
    rows = {
        f"embedder ({pipeline.embedder.identity.model})": first.as_row(),
        f"embedder + reranker ({reranker})": reranked.as_row(),
    }
    print(f"\n{len(questions)} questions over {passages} documents\n")
    print(_markdown_table("stage", rows))
    _write_json(args.json, {"questions": len(questions), "documents": passages, "results": rows})
    return 0


def _eval_answers(args: argparse.Namespace) -> int:
    from serve.evaluation import Pipeline, evaluate_answers

    config, version_dir, questions = _prepare_eval(args)
    pipeline = Pipeline(version_dir, config.embedder, config.retriever, config.reranker)
    top_n = args.top_n or config.reranker.top_n
    scores = evaluate_answers(pipeline, config.generator, questions, top_n, not args.quiet)
    rows = {f"generator ({config.generator.backend}, top_n={top_n})": scores.as_row()}
    print(f"\n{len(questions)} questions\n")
    print(_markdown_table("generator", rows))
    _write_json(args.json, {"questions": len(questions), "results": rows})
    return 0


def _markdown_table(first: str, rows: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = [
        "| " + " | ".join([first, *columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for name, row in rows.items():
        lines.append("| " + " | ".join([name, *(f"{row[c]:.3f}" for c in columns)]) + " |")
    return "\n".join(lines)


def _write_json(path: Path | None, payload: object) -> None:
    if path is not None:
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
