"""The vllm generator's request building and stream handling.

The parts that need no GPU run everywhere; those that check them against vLLM's own
classes run where vLLM can be imported and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from deployments.extras import MissingDependencyError
from deployments.generator.config import VLLMGeneratorConfig
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.generator.vllm import (
    VLLMGenerator,
    engine_arguments,
    pieces_from_outputs,
    sampling_arguments,
)

VLLM_MISSING = importlib.util.find_spec("vllm") is None
needs_vllm = pytest.mark.skipif(
    VLLM_MISSING,
    reason="vLLM is not installed in this environment (the dev extra leaves it out: its "
    "pins conflict); `make test-production` runs the real engine in a venv of its own",
)

CONFIG = VLLMGeneratorConfig(
    backend="vllm",
    model="elyza/Llama-3-ELYZA-JP-8B",
    gpu_memory_utilization=0.7,
    max_model_len=8192,
    engine_kwargs={"max_num_batched_tokens": 8192},
)
REQUEST = GenerationRequest(
    messages=[ChatTurn("user", "質問")], max_tokens=32, temperature=0.0, stop=("\n\n",), seed=3
)


@dataclass
class FakeCompletion:
    """The fields of vllm.CompletionOutput that the engine reads."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class FakeOutput:
    outputs: list[FakeCompletion]
    finished: bool = False


async def stream(*outputs: Any) -> AsyncIterator[Any]:
    for output in outputs:
        yield output


async def collect(pieces: AsyncIterator[GeneratedText]) -> list[GeneratedText]:
    return [piece async for piece in pieces]


def test_engine_arguments_follow_the_config() -> None:
    arguments = engine_arguments(CONFIG)
    assert arguments["model"] == "elyza/Llama-3-ELYZA-JP-8B"
    assert arguments["served_model_name"] == "elyza/Llama-3-ELYZA-JP-8B"
    assert arguments["gpu_memory_utilization"] == 0.7
    assert arguments["max_model_len"] == 8192
    assert arguments["tensor_parallel_size"] == 1
    assert arguments["max_num_batched_tokens"] == 8192
    assert "distributed_executor_backend" not in arguments, "auto leaves vLLM's own choice"
    assert "quantization" not in arguments and "tokenizer" not in arguments
    assert "stream_interval" not in arguments, "unset: vLLM's own (every token)"
    coarse = CONFIG.model_copy(update={"stream_interval": 8})
    assert engine_arguments(coarse)["stream_interval"] == 8
    tp = CONFIG.model_copy(
        update={"tensor_parallel_size": 2, "distributed_executor_backend": "ray"}
    )
    assert engine_arguments(tp)["distributed_executor_backend"] == "ray"


def test_sampling_arguments_take_the_request_first() -> None:
    arguments = sampling_arguments(REQUEST, CONFIG.sampling, max_tokens=32)
    assert arguments == {
        "n": 1,
        "max_tokens": 32,
        "temperature": 0.0,
        "top_p": CONFIG.sampling.top_p,
        "repetition_penalty": 1.0,
        "skip_special_tokens": True,
        "stop": ["\n\n"],
        "seed": 3,
    }
    plain = sampling_arguments(
        GenerationRequest(messages=[ChatTurn("user", "q")]), CONFIG.sampling, 10
    )
    assert plain["temperature"] == CONFIG.sampling.temperature
    assert "stop" not in plain and "seed" not in plain


def test_delta_outputs_become_pieces_and_the_last_carries_the_counts() -> None:
    pieces = asyncio.run(
        collect(
            pieces_from_outputs(
                stream(
                    FakeOutput([FakeCompletion("高松", [11, 12])]),
                    FakeOutput([FakeCompletion("", [])]),
                    FakeOutput([FakeCompletion("市です", [13], "length")], finished=True),
                ),
                prompt_tokens=40,
            )
        )
    )
    assert [(p.text, p.tokens, p.finish_reason) for p in pieces] == [
        ("高松", 2, None),
        ("市です", 1, "length"),
    ]
    assert pieces[-1].prompt_tokens == 40 and pieces[0].prompt_tokens is None


@pytest.mark.skipif(not VLLM_MISSING, reason="vLLM is installed here")
def test_without_vllm_the_backend_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'ja-rag-serve\[gpu\]'"):
        VLLMGenerator(CONFIG)


def test_a_blocked_vllm_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(MissingDependencyError, match=r"ja-rag-serve\[gpu\]"):
        VLLMGenerator(CONFIG)


@needs_vllm
def test_vllm_accepts_the_engine_and_sampling_arguments() -> None:
    import vllm
    from vllm.sampling_params import RequestOutputKind

    vllm.AsyncEngineArgs(**engine_arguments(CONFIG))
    params = vllm.SamplingParams(
        **sampling_arguments(REQUEST, CONFIG.sampling, 32), output_kind=RequestOutputKind.DELTA
    )
    assert params.max_tokens == 32 and params.stop == ["\n\n"] and params.seed == 3


@needs_vllm
def test_vllm_request_outputs_stream_as_pieces() -> None:
    import vllm

    def output(text: str, ids: list[int], finish: str | None) -> Any:
        completion = vllm.CompletionOutput(
            index=0,
            text=text,
            token_ids=ids,
            cumulative_logprob=None,
            logprobs=None,
            finish_reason=finish,
        )
        return vllm.RequestOutput(
            request_id="r",
            prompt="p",
            prompt_token_ids=[1, 2, 3],
            prompt_logprobs=None,
            outputs=[completion],
            finished=finish is not None,
        )

    pieces = asyncio.run(
        collect(
            pieces_from_outputs(stream(output("高松", [5], None), output("市", [6], "stop")), 3)
        )
    )
    assert "".join(p.text for p in pieces) == "高松市"
    assert pieces[-1].finish_reason == "stop" and pieces[-1].prompt_tokens == 3
