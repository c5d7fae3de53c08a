"""Generator engine that relays to an OpenAI-compatible chat endpoint, streaming.

The RAG prompt (system prompt, numbered passages, question) is built here; the
upstream (a vLLM server, Ollama, llama.cpp server, a hosted API) applies its own
chat template and streams tokens, which are passed on as they arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from deployments.extras import require
from deployments.generator.config import OpenAIGeneratorConfig, served_name
from deployments.generator.prompting import build_messages
from deployments.generator.protocol import FinishReason, GeneratedText, GenerationRequest


def chat_arguments(config: OpenAIGeneratorConfig, request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments of ``chat.completions.create`` for ``request``."""
    sampling = config.sampling
    arguments: dict[str, Any] = {
        "model": config.model,
        "messages": build_messages(request, config.prompt),
        "stream": True,
        "max_tokens": request.max_tokens or sampling.max_tokens,
        "temperature": sampling.temperature if request.temperature is None else request.temperature,
        "top_p": sampling.top_p if request.top_p is None else request.top_p,
    }
    if request.stop:
        arguments["stop"] = list(request.stop)
    if request.seed is not None:
        arguments["seed"] = request.seed
    if config.stream_usage:
        arguments["stream_options"] = {"include_usage": True}
    return arguments


class OpenAIGenerator:
    """Streams from the upstream; closing the stream (client gone) closes the upstream
    connection, which an OpenAI-compatible server treats as an abort."""

    def __init__(self, config: OpenAIGeneratorConfig) -> None:
        openai = require("openai", "openai", f"the openai generator ({config.base_url})")
        self.config = config
        # The key is read from the typed config (or the variable it names) and handed to
        # the client only; neither is logged.
        self.client: Any = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.resolve_api_key(),
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )

    @property
    def model_name(self) -> str:
        return served_name(self.config.model, self.config.served_model_name)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        stream = await self.client.chat.completions.create(**chat_arguments(self.config, request))
        finish: FinishReason | None = None
        pieces = 0
        usage: Any = None
        try:
            async for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices[:1]:
                    text = choice.delta.content if choice.delta else None
                    if text:
                        pieces += 1
                        yield GeneratedText(text=text, tokens=1)
                    if choice.finish_reason:
                        finish = "length" if choice.finish_reason == "length" else "stop"
        finally:
            await stream.close()
        completion = int(usage.completion_tokens) if usage is not None else pieces
        yield GeneratedText(
            text="",
            tokens=max(completion - pieces, 0),
            finish_reason=finish or "stop",
            prompt_tokens=int(usage.prompt_tokens) if usage is not None else None,
        )

    async def check_health(self) -> None:
        """Cheap: the upstream answers its model list."""
        await self.client.models.list()

    def close(self) -> None:
        pass
