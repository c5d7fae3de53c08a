"""Generator engine over vLLM's async engine: continuous batching and token streaming.

vLLM is imported when the engine is built, so this module loads (and its request
building is tested) on machines without vLLM or a GPU.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from deployments.extras import require
from deployments.generator.config import SamplingDefaults, VLLMGeneratorConfig, served_name
from deployments.generator.prompting import ChatPrompt
from deployments.generator.protocol import FinishReason, GeneratedText, GenerationRequest

logger = logging.getLogger(__name__)


def engine_arguments(config: VLLMGeneratorConfig) -> dict[str, Any]:
    """Keyword arguments of ``vllm.AsyncEngineArgs`` for ``config`` (unset ones left out)."""
    arguments: dict[str, Any] = {
        "model": config.model,
        "served_model_name": served_name(config.model, config.served_model_name),
        "tokenizer": config.tokenizer,
        "revision": config.revision,
        "dtype": config.dtype,
        "quantization": config.quantization,
        "tensor_parallel_size": config.tensor_parallel_size,
        "distributed_executor_backend": None
        if config.distributed_executor_backend == "auto"
        else config.distributed_executor_backend,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": config.max_model_len,
        "max_num_seqs": config.max_num_seqs,
        "stream_interval": config.stream_interval,
        "enforce_eager": config.enforce_eager,
        "enable_prefix_caching": config.enable_prefix_caching,
        "trust_remote_code": config.trust_remote_code,
    }
    arguments.update(config.engine_kwargs)
    return {key: value for key, value in arguments.items() if value is not None}


def sampling_arguments(
    request: GenerationRequest, defaults: SamplingDefaults, max_tokens: int
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams``: the request's values, else the defaults."""
    arguments: dict[str, Any] = {
        "n": 1,
        "max_tokens": max_tokens,
        "temperature": defaults.temperature if request.temperature is None else request.temperature,
        "top_p": defaults.top_p if request.top_p is None else request.top_p,
        "repetition_penalty": defaults.repetition_penalty,
        "skip_special_tokens": True,
    }
    if request.stop:
        arguments["stop"] = list(request.stop)
    if request.seed is not None:
        arguments["seed"] = request.seed
    return arguments


class CompletionDelta(Protocol):
    """The fields of ``vllm.CompletionOutput`` read here (delta output kind)."""

    text: str
    token_ids: Any
    finish_reason: str | None


class RequestDelta(Protocol):
    """The fields of ``vllm.RequestOutput`` read here."""

    outputs: Any
    finished: bool


async def pieces_from_outputs(
    outputs: AsyncIterator[RequestDelta], prompt_tokens: int
) -> AsyncIterator[GeneratedText]:
    """vLLM's delta outputs as streamed pieces; the last carries the finish reason."""
    async for output in outputs:
        completion: CompletionDelta = output.outputs[0]
        finish = _finish_reason(completion.finish_reason) if output.finished else None
        tokens = len(completion.token_ids or ())
        if completion.text or tokens or finish:
            yield GeneratedText(
                text=completion.text,
                tokens=tokens,
                finish_reason=finish,
                prompt_tokens=prompt_tokens if finish else None,
            )


def _finish_reason(reason: str | None) -> FinishReason:
    return "length" if reason == "length" else "stop"


class VLLMGenerator:
    """One vLLM ``AsyncLLM`` per replica; every request is its own vLLM request, aborted
    when the caller stops reading (client disconnect)."""

    def __init__(self, config: VLLMGeneratorConfig, placement_group: Any | None = None) -> None:
        purpose = f"the vLLM generator ({config.model})"
        vllm = require("vllm", "gpu", purpose)
        transformers = require("transformers", "gpu", purpose)
        self.config = config
        self._vllm = vllm
        self._output_kind = require("vllm.sampling_params", "gpu", purpose).RequestOutputKind
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            config.tokenizer or config.model,
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
        )
        self.prompt = ChatPrompt(tokenizer, config.prompt)
        vllm_config = vllm.AsyncEngineArgs(**engine_arguments(config)).create_engine_config()
        if placement_group is not None:
            # vLLM's engine core runs in a child process, outside the replica's placement
            # group context: hand the group over so tensor-parallel workers use its bundles.
            vllm_config.parallel_config.placement_group = placement_group
        self.max_model_len = int(vllm_config.model_config.max_model_len)
        self.engine: Any = vllm.AsyncLLMEngine.from_vllm_config(vllm_config)
        logger.info("vLLM engine ready: %s, max_model_len %d", config.model, self.max_model_len)

    @property
    def model_name(self) -> str:
        return served_name(self.config.model, self.config.served_model_name)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        wanted = request.max_tokens or self.config.sampling.max_tokens
        # Template rendering and tokenizing take a few ms: keep them off the event loop
        # that streams every other request.
        token_ids, _, max_tokens = await asyncio.to_thread(
            self.prompt.encode, request, wanted, self.max_model_len
        )
        params = self._vllm.SamplingParams(
            **sampling_arguments(request, self.config.sampling, max_tokens),
            output_kind=self._output_kind.DELTA,
        )
        request_id = f"jarag-{uuid.uuid4().hex}"
        outputs = self.engine.generate({"prompt_token_ids": token_ids}, params, request_id)
        finished = False
        try:
            async for piece in pieces_from_outputs(outputs, len(token_ids)):
                yield piece
            finished = True
        finally:
            if not finished:
                # Cancelled (client gone) or failed: free the sequence's KV cache now.
                await self.engine.abort(request_id)

    def stats(self) -> dict[str, int]:
        """vLLM's own count of the requests it has not finished (running or waiting): 0
        once every stream has ended or been aborted."""
        return {"unfinished_requests": int(self.engine.get_num_unfinished_requests())}

    async def check_health(self) -> None:
        await self.engine.check_health()

    def close(self) -> None:
        self.engine.shutdown()
