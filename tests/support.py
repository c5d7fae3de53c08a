"""Helpers shared by the test suites."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from deployments.generator.protocol import GeneratorEngine
from deployments.ingress.stages import Stages
from deployments.retriever.config import IndexConfig
from serve.app import Engines, in_process_stages
from serve.config import AppConfig
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


def local_stages(index_root: Path, generator: GeneratorEngine | None = None) -> Stages:
    """The built-in stages over ``index_root``: the graph's deployment classes in this
    process (no Ray); ``generator`` replaces the generator's engine."""
    config = AppConfig(index=IndexConfig(path=str(index_root)))
    engines: Engines = {"generator": lambda _config: generator} if generator is not None else {}
    return in_process_stages(config, engines)


RETRIEVAL = AppConfig(index=IndexConfig(path="unused")).retrieval_defaults()
"""The built-in stages' per-request defaults (top_k, top_n)."""


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
