"""`jarag bench vllm --quick`: vLLM's own OpenAI server on the tier's chat model against
the tier's running graph (about 40 s: the server's start)."""

from __future__ import annotations

import json
from pathlib import Path

from serve.bench.tiny_production import Models
from tests.production.conftest import Deployed, jarag

QUICK_TOKENS = 8
"""--quick asks for 8 tokens per stream, at 1 and 2 streams."""


def test_bench_vllm_streams_from_both_servers(
    production_graph: Deployed, production_models: Models, tmp_path: Path
) -> None:
    figures_path = tmp_path / "vllm_streaming.json"
    result = jarag(
        "bench",
        "vllm",
        "--quick",
        "--model",
        production_models.chat,
        "--graph-url",
        production_graph.url,
        "--json",
        figures_path,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "graph/vllm tok/s" in result.stdout
    figures = json.loads(figures_path.read_text(encoding="utf-8"))
    assert set(figures["sides"]) == {"vllm", "graph"}
    prompts = set()
    for side in ("vllm", "graph"):
        for streams in ("1", "2"):
            level = figures["sides"][side][streams]
            assert level["requests"] == 2 * int(streams)
            assert level["completion_tokens"] == level["requests"] * QUICK_TOKENS, (side, level)
            assert level["tokens_per_s"] > 0
            assert 0 < level["first_token_ms"]["p50"] <= level["first_token_ms"]["p99"]
            prompts.add(level["prompt_tokens"])
    assert len(prompts) == 1, f"both servers render the same prompt: {prompts}"
    assert set(figures["graph_to_vllm_tokens_per_s"]) == {"1", "2"}
    assert figures["engine"]["max_model_len"] == 1024
    assert figures["engine"]["enforce_eager"] is True
