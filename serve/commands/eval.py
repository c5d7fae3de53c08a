"""``jarag eval``: retrieval and answer quality over SQuAD-format questions."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from deployments.index.format import resolve_version_dir
from deployments.retriever.config import RetrieverConfig
from serve.commands.common import add_config_options, app_config
from serve.config import AppConfig
from serve.demo import DEMO_CONVERSATIONS, DEMO_CORPUS
from serve.evaluation.conversations import (
    RECALL_AT,
    evaluate_conversations,
    read_conversations,
)
from serve.evaluation.quality import (
    Pipeline,
    evaluate_answers,
    evaluate_retrieval,
    pool_questions,
)
from serve.indexing.build import BuildSettings, build_index
from serve.indexing.corpus import JSON_LINES_SUFFIXES, Question


def register(commands: Any) -> None:
    evaluate = commands.add_parser("eval", help="measure quality on SQuAD-format questions")
    eval_commands = evaluate.add_subparsers(required=True, metavar="WHAT")
    for name, run, what in (
        ("retrieval", _retrieval, "recall@1/5/20 and MRR@10 of each question's gold passage"),
        ("answers", _answers, "answer containment and character F1 of generated answers"),
    ):
        sub = eval_commands.add_parser(name, help=what)
        sub.add_argument(
            "questions",
            type=Path,
            nargs="+",
            help="SQuAD-format .json files with the questions (pooled; each file's "
            "paragraphs are indexed), or JSON Lines of {question, answer, doc_id} about the "
            "documents given with --distractors (the demo: serve/demo/questions.jsonl "
            "--distractors serve/demo/prefectures.jsonl)",
        )
        sub.add_argument(
            "--distractors", nargs="*", type=Path, default=[], help="more documents to index"
        )
        sub.add_argument(
            "--index-dir", type=Path, help="index root to build into (or reuse with --reuse-index)"
        )
        sub.add_argument(
            "--reuse-index", action="store_true", help="use --index-dir as it is, if present"
        )
        add_config_options(sub)
        sub.add_argument("--top-k", type=int, default=None, help="candidates for the reranker")
        sub.add_argument("--top-n", type=int, default=None, help="passages given the generator")
        sub.add_argument("--limit", type=int, default=None, help="only the first N questions")
        sub.add_argument("--json", type=Path, help="also write the figures to this JSON file")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        sub.set_defaults(run=run)
    conversations = eval_commands.add_parser(
        "conversations",
        help=f"follow-up recall@{RECALL_AT}: each later turn of a conversation asked in the "
        "conversation and alone",
    )
    conversations.add_argument(
        "conversations",
        type=Path,
        nargs="?",
        default=DEMO_CONVERSATIONS,
        help="JSON Lines of conversations (default: the demo's, over the demo corpus)",
    )
    conversations.add_argument(
        "--corpus",
        type=Path,
        nargs="+",
        default=[DEMO_CORPUS],
        help="documents to index (default: the demo corpus)",
    )
    conversations.add_argument(
        "--index-dir", type=Path, help="index root to build into (or reuse with --reuse-index)"
    )
    conversations.add_argument(
        "--reuse-index", action="store_true", help="use --index-dir as it is, if present"
    )
    add_config_options(conversations)
    conversations.add_argument("--json", type=Path, help="also write the figures to this file")
    conversations.add_argument("--quiet", action="store_true", help="no progress bars")
    conversations.set_defaults(run=_conversations)


def _prepare_eval(args: argparse.Namespace) -> tuple[AppConfig, Path, list[Question]]:
    config = app_config(args)
    if args.top_k is not None:
        config = config.model_copy(
            update={
                "retriever": RetrieverConfig.model_validate(
                    {**config.retriever.model_dump(), "top_k": args.top_k}
                )
            }
        )
    questions = pool_questions(args.questions)[: args.limit]
    if not questions:
        raise ValueError(f"{', '.join(map(str, args.questions))} holds no questions")
    root = args.index_dir or Path(tempfile.mkdtemp(prefix="jarag-eval-"))
    if not (args.reuse_index and args.index_dir and root.exists()):
        # A SQuAD file holds its paragraphs; a JSON Lines questions file asks about
        # documents given with --distractors.
        squad = [q for q in args.questions if not q.name.endswith(JSON_LINES_SUFFIXES)]
        build_index(
            [*squad, *args.distractors],
            root,
            config.embedder,
            BuildSettings(progress=not args.quiet),
        )
    return config, resolve_version_dir(root), questions


def _retrieval(args: argparse.Namespace) -> int:
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


def _answers(args: argparse.Namespace) -> int:
    config, version_dir, questions = _prepare_eval(args)
    pipeline = Pipeline(version_dir, config.embedder, config.retriever, config.reranker)
    top_n = args.top_n or config.reranker.top_n
    scores = evaluate_answers(pipeline, config.generator, questions, top_n, not args.quiet)
    rows = {f"generator ({config.generator.backend}, top_n={top_n})": scores.as_row()}
    print(f"\n{len(questions)} questions\n")
    print(_markdown_table("generator", rows))
    _write_json(args.json, {"questions": len(questions), "results": rows})
    return 0


def _conversations(args: argparse.Namespace) -> int:
    config = app_config(args)
    conversations = read_conversations(args.conversations)
    root = args.index_dir or Path(tempfile.mkdtemp(prefix="jarag-eval-"))
    if not (args.reuse_index and args.index_dir and root.exists()):
        build_index(args.corpus, root, config.embedder, BuildSettings(progress=not args.quiet))
    index = config.index.model_copy(update={"path": str(resolve_version_dir(root))})
    config = config.model_copy(update={"index": index})
    with tqdm(
        total=len(conversations), desc="conversations", unit="conv", disable=args.quiet
    ) as bar:
        scores = asyncio.run(evaluate_conversations(config, conversations, bar.update))
    rows = scores.rows()
    print(
        f"\n{len(conversations)} conversations, ingress.follow_ups: {config.ingress.follow_ups}\n"
    )
    print(_markdown_table("style", rows))
    _write_json(args.json, {"conversations": len(conversations), "results": rows})
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
