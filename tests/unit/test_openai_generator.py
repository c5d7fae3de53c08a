"""The openai generator against a real HTTP server speaking the OpenAI protocol."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from deployments.generator.config import SYSTEM_PROMPT_JA, OpenAIGeneratorConfig
from deployments.generator.openai import OpenAIGenerator, chat_arguments
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.passage import Passage
from tests import openai_upstream
from tests.support import REPO, free_port

PASSAGE = Passage("kagawa", "kagawa", "香川県", "香川県の県庁所在地は高松市である。")
REQUEST = GenerationRequest(
    messages=[ChatTurn("user", "香川県の県庁所在地は？")],
    passages=[PASSAGE],
    max_tokens=50,
    temperature=0.3,
    stop=("。。",),
    seed=11,
)


@dataclass
class Upstream:
    url: str
    record: Path

    def requests(self) -> list[dict[str, Any]]:
        lines = self.record.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    record = tmp_path_factory.mktemp("upstream") / "requests.jsonl"
    record.touch()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.openai_upstream:app", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "UPSTREAM_RECORD": str(record)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield Upstream(url, record)
    finally:
        process.terminate()
        process.wait(timeout=10)


def generator(upstream: Upstream, **settings: Any) -> OpenAIGenerator:
    base = {"backend": "openai", "base_url": upstream.url, "model": "echo"}
    return OpenAIGenerator(OpenAIGeneratorConfig.model_validate({**base, **settings}))


async def collect(engine: OpenAIGenerator, request: GenerationRequest) -> list[GeneratedText]:
    return [piece async for piece in engine.generate(request)]


def test_streams_the_upstream_pieces_with_its_usage(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JARAG_TEST_UPSTREAM_KEY", "s3cret-value")
    engine = generator(upstream, api_key_env="JARAG_TEST_UPSTREAM_KEY")
    pieces = asyncio.run(collect(engine, REQUEST))
    assert [p.text for p in pieces[:-1]] == openai_upstream.REPLY
    last = pieces[-1]
    assert last.finish_reason == "stop" and last.prompt_tokens == openai_upstream.PROMPT_TOKENS
    assert sum(p.tokens for p in pieces) == openai_upstream.COMPLETION_TOKENS

    sent = upstream.requests()[-1]
    assert sent["authorization"] == "Bearer s3cret-value"
    body = sent["body"]
    assert body["model"] == "echo" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (50, 0.3, 11)
    assert body["stop"] == ["。。"]
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT_JA}
    assert "[1] 香川県\n香川県の県庁所在地は高松市である。" in body["messages"][-1]["content"]


def test_without_usage_each_piece_counts_as_a_token(upstream: Upstream) -> None:
    pieces = asyncio.run(collect(generator(upstream, stream_usage=False), REQUEST))
    assert "stream_options" not in upstream.requests()[-1]["body"]
    assert sum(p.tokens for p in pieces) == len(openai_upstream.REPLY)
    assert pieces[-1].prompt_tokens is None


def test_a_client_that_goes_away_closes_the_upstream_stream(upstream: Upstream) -> None:
    engine = generator(upstream, model="slow")

    async def read_two_then_leave() -> None:
        stream = engine.generate(REQUEST)
        assert isinstance(stream, AsyncGenerator)
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(read_two_then_leave())
    deadline = time.monotonic() + 10
    while {"event": "disconnected"} not in upstream.requests():
        assert time.monotonic() < deadline, "the upstream never saw the disconnect"
        time.sleep(0.1)


def test_health_asks_the_upstream(upstream: Upstream) -> None:
    asyncio.run(generator(upstream).check_health())


def test_the_key_is_never_shown(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    config = OpenAIGeneratorConfig(
        backend="openai", base_url=upstream.url, model="echo", api_key="inline-secret"
    )
    assert "inline-secret" not in repr(config) and "inline-secret" not in str(config.model_dump())
    assert config.resolve_api_key() == "inline-secret"
    monkeypatch.delenv("JARAG_ABSENT_KEY", raising=False)
    absent = config.model_copy(update={"api_key": None, "api_key_env": "JARAG_ABSENT_KEY"})
    with pytest.raises(RuntimeError, match="JARAG_ABSENT_KEY"):
        absent.resolve_api_key()
    with pytest.raises(ValueError, match="not both"):
        OpenAIGeneratorConfig.model_validate(
            {**config.model_dump(), "api_key": "x", "api_key_env": "Y"}
        )


def test_request_defaults_come_from_the_config() -> None:
    config = OpenAIGeneratorConfig.model_validate(
        {
            "backend": "openai",
            "base_url": "http://upstream/v1",
            "model": "m",
            "sampling": {"max_tokens": 99, "temperature": 0.0, "top_p": 0.5},
        }
    )
    plain = GenerationRequest(messages=[ChatTurn("user", "質問")])
    arguments = chat_arguments(config, plain)
    assert (arguments["max_tokens"], arguments["temperature"], arguments["top_p"]) == (99, 0.0, 0.5)
    assert "stop" not in arguments and "seed" not in arguments
    assert arguments["messages"][-1] == {"role": "user", "content": "質問"}
