"""Helpers shared by the test suites."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from serve.demo import DEMO_QUESTIONS

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_questions() -> list[dict[str, str]]:
    return [json.loads(line) for line in DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    return path


def parse_sse(body: str) -> list[Any]:
    """The payloads of a server-sent event stream; '[DONE]' stays a string."""
    events: list[Any] = []
    for block in body.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), f"not an SSE data line: {block!r}"
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def local_stages(index_root: Path, generator: Any = None) -> Any:
    """The built-in engines over ``index_root``, in-process (LocalStages)."""
    from deployments.embedder.config import HashingEmbedderConfig
    from deployments.embedder.factory import create_embedder
    from deployments.generator.config import ExtractiveGeneratorConfig
    from deployments.generator.factory import create_generator
    from deployments.index.format import resolve_version_dir
    from deployments.ingress.stages import LocalStages
    from deployments.reranker.config import LexicalRerankerConfig
    from deployments.reranker.factory import create_reranker
    from deployments.retriever.config import RetrieverConfig
    from deployments.retriever.faiss_search import FaissRetriever

    version_dir = resolve_version_dir(index_root)
    return LocalStages(
        create_embedder(HashingEmbedderConfig(), version_dir),
        FaissRetriever(version_dir, RetrieverConfig()),
        create_reranker(LexicalRerankerConfig(), version_dir),
        generator or create_generator(ExtractiveGeneratorConfig()),
        top_n=5,
    )


def wait_for_answer(
    url: str,
    body: Mapping[str, object],
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> float:
    """Seconds until a POST of ``body`` to ``url`` (a chat endpoint) is answered 200
    without a degraded stage; fails the test after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            response = requests.post(url, json=body, headers=headers, timeout=30)
            if response.ok and not response.headers.get("X-RAG-Degraded"):
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise AssertionError(f"no healthy answer from {url} within {timeout_s} s")
