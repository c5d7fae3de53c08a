"""Generator engine over Hugging Face ``generate`` with a token streamer (small models)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from deployments.extras import require
from deployments.generator.config import TransformersGeneratorConfig, served_name
from deployments.generator.prompting import ChatPrompt
from deployments.generator.protocol import FinishReason, GeneratedText, GenerationRequest
from deployments.torch_runtime import resolve_device, torch_dtype

logger = logging.getLogger(__name__)


class TransformersGenerator:
    """``model.generate`` runs in a worker thread and a ``TextIteratorStreamer`` hands
    its text to the event loop as it is decoded. One answer at a time per replica;
    a cancelled request stops generation at the next token."""

    def __init__(self, config: TransformersGeneratorConfig) -> None:
        purpose = f"the transformers generator ({config.model})"
        self._transformers = require("transformers", "models", purpose)
        self._torch = require("torch", "models", purpose)
        self.config = config
        self.device = resolve_device(config.device, purpose)
        options = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
        self.tokenizer: Any = self._transformers.AutoTokenizer.from_pretrained(
            config.model, **options
        )
        self.model: Any = self._transformers.AutoModelForCausalLM.from_pretrained(
            config.model, dtype=torch_dtype(config.dtype, self.device), **options
        ).to(self.device)
        self.model.eval()
        self.prompt = ChatPrompt(self.tokenizer, config.prompt)
        self._one_at_a_time = asyncio.Lock()
        logger.info("loaded %s on %s", config.model, self.device)

    @property
    def model_name(self) -> str:
        return served_name(self.config.model, self.config.served_model_name)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        wanted = request.max_tokens or self.config.sampling.max_tokens
        token_ids, _, max_new_tokens = await asyncio.to_thread(
            self.prompt.encode, request, wanted, self.config.max_model_len
        )
        async with self._one_at_a_time:
            streamer = self._transformers.TextIteratorStreamer(
                self.tokenizer, skip_prompt=True, skip_special_tokens=True
            )
            stop = threading.Event()
            arguments = self._generate_arguments(request, token_ids, max_new_tokens, streamer, stop)
            run = asyncio.ensure_future(asyncio.to_thread(self._run, arguments, request.seed))
            # However generate ends (done, failed, stopped), the reader below wakes up.
            run.add_done_callback(lambda _: streamer.text_queue.put(streamer.stop_signal))
            try:
                while (text := await asyncio.to_thread(streamer.text_queue.get)) is not None:
                    if text:
                        yield GeneratedText(text=text, tokens=0)
                sequences = await run
                generated = int(sequences.shape[1]) - len(token_ids)
                finish: FinishReason = "length" if generated >= max_new_tokens else "stop"
                yield GeneratedText(
                    text="", tokens=generated, finish_reason=finish, prompt_tokens=len(token_ids)
                )
            finally:
                stop.set()
                await asyncio.wait({run})

    async def check_health(self) -> None:
        """The weights are in this process; a probe generation would queue behind users."""

    def close(self) -> None:
        pass

    def _generate_arguments(
        self,
        request: GenerationRequest,
        token_ids: list[int],
        max_new_tokens: int,
        streamer: Any,
        stop: threading.Event,
    ) -> dict[str, Any]:
        torch, sampling = self._torch, self.config.sampling
        temperature = sampling.temperature if request.temperature is None else request.temperature
        input_ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)
        eos = self.tokenizer.eos_token_id
        arguments: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": max_new_tokens,
            "streamer": streamer,
            "stopping_criteria": self._transformers.StoppingCriteriaList([_StopWhenSet(stop)]),
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else eos,
            "repetition_penalty": sampling.repetition_penalty,
        }
        if temperature > 0:
            arguments.update(
                do_sample=True,
                temperature=temperature,
                top_p=sampling.top_p if request.top_p is None else request.top_p,
            )
        else:
            arguments.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if request.stop:
            arguments.update(stop_strings=list(request.stop), tokenizer=self.tokenizer)
        return arguments

    def _run(self, arguments: dict[str, Any], seed: int | None) -> Any:
        if seed is not None:
            self._transformers.set_seed(seed)
        with self._torch.inference_mode():
            return self.model.generate(**arguments)


class _StopWhenSet:
    """A stopping criterion that ends generation once the request is cancelled."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)
