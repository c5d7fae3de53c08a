"""The RAG chat logic: retrieve, rerank, generate, and shape OpenAI responses."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.ingress.chat.protocol import (
    SSE_DONE,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    Source,
    Usage,
    sse_event,
)
from deployments.ingress.config import IngressConfig
from deployments.ingress.errors import APIError, error_body
from deployments.ingress.models import ModelCatalog
from deployments.ingress.stages import StageClient
from deployments.passage import Hit

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedChat:
    """A validated request, the passages found for it, and what to generate."""

    completion_id: str
    created: int
    model: str
    hits: list[Hit]
    generation: GenerationRequest


class ChatService:
    def __init__(self, stages: StageClient, config: IngressConfig, catalog: ModelCatalog) -> None:
        self.stages = stages
        self.config = config
        self.catalog = catalog

    async def prepare(self, request: ChatCompletionRequest) -> PreparedChat:
        """Validate the request and run retrieval; raises APIError for bad input."""
        model = request.model or self.config.model_name
        with_retrieval = model == self.config.model_name
        if not with_retrieval and model != await self.catalog.generator_model():
            raise APIError(404, f"model {model!r} does not exist", "model_not_found", "model")
        turns = self._turns(request.messages)
        limit = request.token_limit
        if limit is not None and limit > self.config.max_tokens_limit:
            raise APIError(
                400,
                f"max_tokens must be at most {self.config.max_tokens_limit}",
                param="max_tokens",
            )
        hits: list[Hit] = []
        if with_retrieval:
            query = self._retrieval_query(turns)
            options = request.rag
            candidates = await self.stages.retrieve(query, options.top_k if options else None)
            if candidates:
                hits = await self.stages.rerank(
                    query, candidates, options.top_n if options else None
                )
        generation = GenerationRequest(
            messages=turns,
            passages=[h.passage for h in hits],
            max_tokens=limit,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(request.stop_sequences),
            seed=request.seed,
        )
        return PreparedChat(
            f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model, hits, generation
        )

    async def complete(self, chat: PreparedChat) -> ChatCompletion:
        pieces: list[GeneratedText] = [p async for p in self.stages.generate(chat.generation)]
        answer = "".join(p.text for p in pieces)
        finish = next((p.finish_reason for p in reversed(pieces) if p.finish_reason), "stop")
        return ChatCompletion(
            id=chat.completion_id,
            created=chat.created,
            model=chat.model,
            choices=[Choice(message=AssistantMessage(content=answer), finish_reason=finish)],
            usage=_usage(chat.generation, pieces),
            sources=_sources(chat.hits, answer),
        )

    async def stream(self, chat: PreparedChat, include_usage: bool) -> AsyncIterator[str]:
        """Server-sent events: role, content pieces, a last chunk with sources, [DONE]."""

        def chunk(delta: Delta, finish: str | None = None, **extra: object) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=chat.completion_id,
                created=chat.created,
                model=chat.model,
                choices=[ChunkChoice(delta=delta, finish_reason=finish)],
                **extra,
            )

        yield chunk(Delta(role="assistant", content="")).sse()
        pieces: list[GeneratedText] = []
        try:
            async for piece in self.stages.generate(chat.generation):
                pieces.append(piece)
                if piece.text:
                    yield chunk(Delta(content=piece.text)).sse()
        except Exception as error:
            logger.exception("generation failed for %s", chat.completion_id)
            yield sse_event(error_body(500, f"generation failed: {type(error).__name__}"))
            yield SSE_DONE
            return
        answer = "".join(p.text for p in pieces)
        finish = next((p.finish_reason for p in reversed(pieces) if p.finish_reason), "stop")
        yield chunk(Delta(), finish, sources=_sources(chat.hits, answer)).sse()
        if include_usage:
            final = ChatCompletionChunk(
                id=chat.completion_id,
                created=chat.created,
                model=chat.model,
                choices=[],
                usage=_usage(chat.generation, pieces),
            )
            yield final.sse()
        yield SSE_DONE

    def _turns(self, messages: Sequence[ChatMessage]) -> list[ChatTurn]:
        if len(messages) > self.config.max_messages:
            raise APIError(
                400, f"at most {self.config.max_messages} messages are accepted", param="messages"
            )
        turns = []
        for number, message in enumerate(messages):
            text = message.text
            if len(text) > self.config.max_input_chars:
                raise APIError(
                    400,
                    f"messages[{number}] has {len(text)} characters; the limit is "
                    f"{self.config.max_input_chars}",
                    param="messages",
                )
            role = "system" if message.role == "developer" else message.role
            turns.append(ChatTurn(role, text))
        if not any(t.role == "user" for t in turns):
            raise APIError(400, "messages must contain a user message", param="messages")
        if not turns[-1].role == "user" or not turns[-1].content.strip():
            raise APIError(
                400, "the last message must be a non-empty user message", param="messages"
            )
        return turns

    def _retrieval_query(self, turns: Sequence[ChatTurn]) -> str:
        users = [t.content for t in turns if t.role == "user"]
        return "\n".join(users[-1 - self.config.query_history_turns :])


def _sources(hits: Sequence[Hit], answer: str) -> list[Source]:
    return [Source.from_hit(number, hit, answer) for number, hit in enumerate(hits, start=1)]


def _usage(request: GenerationRequest, pieces: Sequence[GeneratedText]) -> Usage:
    completion = sum(p.tokens for p in pieces)
    reported = next(
        (p.prompt_tokens for p in reversed(pieces) if p.prompt_tokens is not None), None
    )
    prompt = reported if reported is not None else _estimate_prompt_tokens(request)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _estimate_prompt_tokens(request: GenerationRequest) -> int:
    """Characters of the conversation and passages: an upper bound for Japanese text."""
    return sum(len(t.content) for t in request.messages) + sum(
        len(p.document_text) for p in request.passages
    )
