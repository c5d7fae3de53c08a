"""The RAG chat logic: retrieve, rerank, generate, and shape OpenAI responses."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.ingress.chat.followups import (
    Search,
    carry_subject,
    prefer_subject,
    rewrite_request,
    standalone_text,
)
from deployments.ingress.chat.protocol import (
    SSE_DONE,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    ContentEvents,
    Degradable,
    Delta,
    RagOptions,
    Source,
    Usage,
    sse_event,
)
from deployments.ingress.config import IngressConfig, RetrievalDefaults
from deployments.ingress.deadline import Deadline, DeadlineExceeded, StageTimeout
from deployments.ingress.errors import APIError, error_body
from deployments.ingress.models import ModelCatalog
from deployments.ingress.stages import (
    KnowledgeBaseNotFound,
    StageClient,
    StageOverloaded,
    StageRejected,
    StageUnavailable,
)
from deployments.metrics import IngressMetrics
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
    degraded: tuple[Degradable, ...] = ()
    notices: tuple[str, ...] = ()


@dataclass(slots=True)
class Answer:
    """A generation that has started: the pieces received so far and the rest to come
    (in chunks: the pieces that arrived together), or, when the generator could not
    take it, why (``unavailable``)."""

    head: list[GeneratedText]
    rest: AsyncIterator[list[GeneratedText]] | None
    unavailable: str | None = None


class ChatService:
    def __init__(
        self,
        stages: StageClient,
        config: IngressConfig,
        defaults: RetrievalDefaults,
        catalog: ModelCatalog,
        metrics: IngressMetrics | None = None,
    ) -> None:
        self.stages = stages
        self.config = config
        self.defaults = defaults
        self.catalog = catalog
        self.metrics = metrics or IngressMetrics()

    async def prepare(self, request: ChatCompletionRequest, deadline: Deadline) -> PreparedChat:
        """Validate the request and run retrieval; raises APIError for bad input.

        A reranker that is down, full or slower than ``reranker_timeout_s`` leaves the
        passages in the retriever's order, and the answer says so.
        """
        model = request.model or self.config.model_name
        with_retrieval = request.asks_retrieval(self.config.model_name)
        try:
            knowledge_base = request.knowledge_base(self.config.model_name)
        except ValueError as error:
            raise APIError(400, str(error), param="rag.knowledge_base") from None
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
        degraded: list[Degradable] = []
        notices: list[str] = []
        if with_retrieval:
            rag = request.rag or RagOptions()
            options = self.defaults.resolve(rag.top_k, rag.top_n, rag.search)

            async def search(query: str, subject: str | None) -> list[Hit]:
                return await self._search(
                    query, subject, options, deadline, degraded, notices, knowledge_base
                )

            query, hits = await self._standalone(turns, search, deadline)
            logger.debug("retrieval query: %s", query)
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
            f"chatcmpl-{uuid.uuid4().hex}",
            int(time.time()),
            model,
            hits,
            generation,
            tuple(degraded),
            tuple(notices),
        )

    async def start(self, chat: PreparedChat, deadline: Deadline) -> Answer:
        """Start generating and wait for the first words (so that a full, hung or down
        generator is known before a response is begun).

        A replica must take the request within ``generator_start_timeout_s``;
        otherwise, or when the generator is down, the Answer is ``unavailable``.
        """
        chunks = self.stages.generate_chunks(chat.generation)
        head: list[GeneratedText] = []
        try:
            while True:
                # Until a replica has taken the request (its first, empty piece), the
                # generator may be down; after that it is only slow.
                limit = None if head else self.config.generator_start_timeout_s
                chunk = await deadline.within(anext(chunks, None), "generator", limit)
                if chunk is None:
                    return Answer(head, None)
                head.extend(chunk)
                if any(piece.text or piece.finish_reason for piece in chunk):
                    return Answer(head, chunks)
        except (StageTimeout, StageUnavailable) as error:
            logger.warning("answering without the generator: %s", error)
            self.metrics.degraded("generator")
            await _close(chunks)
            return Answer([], None, str(error))
        except BaseException:
            await _close(chunks)
            raise

    async def complete(self, chat: PreparedChat, deadline: Deadline) -> ChatCompletion:
        for attempt in itertools.count():
            answer = await self.start(chat, deadline)
            if answer.unavailable is None:
                try:
                    rest = await deadline.within(_collect_chunks(answer.rest), "generator")
                except StageUnavailable as error:
                    # Nothing has reached the client yet: generate again, elsewhere.
                    if attempt < self.config.stage_retries:
                        logger.warning("generator: a replica was lost mid-answer; retrying")
                        continue
                    self.metrics.degraded("generator")
                    answer = Answer([], None, str(error))
                else:
                    answer.head.extend(rest)
            break
        if answer.unavailable is not None:
            return self._unavailable_completion(chat, answer.unavailable)
        pieces = answer.head
        text = "".join(p.text for p in pieces)
        finish = next((p.finish_reason for p in reversed(pieces) if p.finish_reason), "stop")
        return ChatCompletion(
            id=chat.completion_id,
            created=chat.created,
            model=chat.model,
            choices=[Choice(message=AssistantMessage(content=text), finish_reason=finish)],
            usage=_usage(chat.generation, pieces),
            sources=_sources(chat.hits, text),
            degraded=list(chat.degraded),
            notice=_notice(chat.notices),
        )

    def degraded(self, chat: PreparedChat, answer: Answer) -> list[Degradable]:
        """The stages left out of this answer."""
        degraded = list(chat.degraded)
        if answer.unavailable is not None:
            degraded.append("generator")
        return degraded

    async def stream(
        self, chat: PreparedChat, answer: Answer, include_usage: bool, deadline: Deadline
    ) -> AsyncIterator[str]:
        """Server-sent events: role, content (one event for the pieces that arrived
        together), a last chunk with sources, [DONE].

        A failure once the stream has begun is sent as an ``{"error": ...}`` event.
        """

        def chunk(delta: Delta, finish: str | None = None, **extra: object) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=chat.completion_id,
                created=chat.created,
                model=chat.model,
                choices=[ChunkChoice(delta=delta, finish_reason=finish)],
                **extra,
            )

        notices = list(chat.notices)
        pieces = list(answer.head)
        content = ContentEvents(chat.completion_id, chat.created, chat.model)
        try:
            yield chunk(Delta(role="assistant", content="")).sse()
            if answer.unavailable is not None:
                notices.append(_unavailable_notice(answer.unavailable))
                pieces = [GeneratedText(self.config.generator_unavailable_message, tokens=0)]
            if text := "".join(p.text for p in pieces):
                yield content.event(text)
            rest = answer.rest
            while rest is not None:
                following = await deadline.within(anext(rest, None), "generator")
                if following is None:
                    break
                pieces.extend(following)
                if text := "".join(p.text for p in following):
                    yield content.event(text)
        except (DeadlineExceeded, StageUnavailable) as error:
            status, code = (
                (504, "deadline_exceeded")
                if isinstance(error, DeadlineExceeded)
                else (503, "stage_unavailable")
            )
            logger.warning("stream %s ended early: %s", chat.completion_id, error)
            self.metrics.error(code)
            yield sse_event(error_body(status, str(error), code))
            yield SSE_DONE
            return
        finally:
            await _close(answer.rest)
        text = "".join(p.text for p in pieces)
        finish = next((p.finish_reason for p in reversed(pieces) if p.finish_reason), "stop")
        degraded = self.degraded(chat, answer)
        yield chunk(
            Delta(),
            finish,
            sources=_sources(chat.hits, text),
            degraded=degraded or None,
            notice=_notice(notices),
        ).sse()
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

    def _unavailable_completion(self, chat: PreparedChat, reason: str) -> ChatCompletion:
        text = self.config.generator_unavailable_message
        return ChatCompletion(
            id=chat.completion_id,
            created=chat.created,
            model=chat.model,
            choices=[Choice(message=AssistantMessage(content=text), finish_reason="stop")],
            usage=_usage(chat.generation, []),
            sources=_sources(chat.hits, ""),
            degraded=[*chat.degraded, "generator"],
            notice=_notice([*chat.notices, _unavailable_notice(reason)]),
        )

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

    async def _search(
        self,
        query: str,
        subject: str | None,
        options: RetrievalDefaults,
        deadline: Deadline,
        degraded: list[Degradable],
        notices: list[str],
        knowledge_base: str | None = None,
    ) -> list[Hit]:
        """Retrieve and rerank ``query`` in ``knowledge_base`` (default: the first), the
        passages about ``subject`` (if given) first. A reranker that is down, full or
        slower than ``reranker_timeout_s`` leaves the passages in the retriever's order,
        and the answer says so (once)."""
        try:
            candidates = await deadline.within(
                self.stages.retrieve(query, options.top_k, knowledge_base, params=options.search),
                "retriever",
            )
        except KnowledgeBaseNotFound as error:
            raise APIError(404, str(error), "model_not_found", "model") from None
        if not candidates:
            return []
        # With a subject to prefer, every candidate is ranked before the cut to top_n.
        keep = len(candidates) if subject else options.top_n
        try:
            ranked = await deadline.within(
                self.stages.rerank(query, candidates, keep),
                "reranker",
                self.config.reranker_timeout_s,
            )
        except (StageTimeout, StageUnavailable, StageOverloaded) as error:
            logger.warning("answering without the reranker: %s", error)
            if "reranker" not in degraded:
                self.metrics.degraded("reranker")
                degraded.append("reranker")
                notices.append(f"{error}; the sources are in the retriever's order")
            ranked = candidates
        if subject:
            ranked = prefer_subject(ranked, subject)
        return ranked[: options.top_n]

    async def _standalone(
        self, turns: Sequence[ChatTurn], search: Search, deadline: Deadline
    ) -> tuple[str, list[Hit]]:
        """The last user turn as a query that stands alone, and its passages
        (``ingress.follow_ups``; see followups.py)."""
        users = [t.content for t in turns if t.role == "user"]
        mode = self.config.follow_ups if len(users) > 1 else "off"
        if mode == "rule":
            resolved = await carry_subject(users, search, self.config.follow_up_turns)
            return resolved.query, resolved.hits
        query = users[-1]
        if mode == "generator":
            query = await self._rewrite(turns, deadline)
        return query, await search(query, None)

    async def _rewrite(self, turns: Sequence[ChatTurn], deadline: Deadline) -> str:
        """The generator's standalone version of the last user turn; the turn itself
        when the generator cannot take the rewrite in ``generator_start_timeout_s``."""
        last = turns[-1].content
        request = rewrite_request(
            turns, self.config.follow_up_prompt, self.config.follow_up_max_tokens
        )
        pieces = self.stages.generate(request)
        try:
            rewritten = await deadline.within(
                _collect(pieces), "generator", self.config.generator_start_timeout_s
            )
        except (StageTimeout, StageUnavailable, StageOverloaded, StageRejected) as error:
            logger.warning("follow-up searched as it is (no rewrite): %s", error)
            return last
        finally:
            await _close(pieces)
        return standalone_text("".join(p.text for p in rewritten), last)


async def _collect(pieces: AsyncIterator[GeneratedText] | None) -> list[GeneratedText]:
    return [p async for p in pieces] if pieces is not None else []


async def _collect_chunks(
    chunks: AsyncIterator[list[GeneratedText]] | None,
) -> list[GeneratedText]:
    return [p async for chunk in chunks for p in chunk] if chunks is not None else []


async def _close(pieces: AsyncIterator[object] | None) -> None:
    """Stop a generation early (Stages then cancels it in the generator)."""
    if isinstance(pieces, AsyncGenerator):
        await pieces.aclose()


def _unavailable_notice(reason: str) -> str:
    return f"{reason}; no answer was generated, the sources are those found for the question"


def _notice(notices: Sequence[str]) -> str | None:
    return " / ".join(notices) or None


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
