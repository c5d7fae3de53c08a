"""Stages over stand-in Serve handles: lost replicas retried, full stages shed, and
cancellation passed on to the Serve requests (no Ray needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.serve.exceptions import BackPressureError, RayServeException

from deployments.generator.deployment import STARTED
from deployments.generator.prompting import PromptTooLongError
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.ingress.stages import (
    ServeHandle,
    StageOverloaded,
    StageRejected,
    Stages,
    StageUnavailable,
)
from deployments.passage import Hit, Passage
from deployments.reranker.protocol import RerankScores
from deployments.retriever.search_parameters import SearchParameters


class FakeResponse:
    """A DeploymentResponse stand-in: awaitable (or iterable), cancellable, and whose
    cancel() re-raises the request's error, as Serve's does."""

    def __init__(self, outcome: Any = None, pieces: list[Any] | None = None) -> None:
        self.outcome = outcome
        self.pieces = pieces
        self.cancelled = False

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if self.outcome == "hang":
            await asyncio.Event().wait()
        return self.outcome

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[Any]:
        for piece in self.pieces or []:
            if isinstance(piece, BaseException):
                raise piece
            if piece == "hang":
                await asyncio.Event().wait()
            yield piece

    def cancel(self) -> None:
        self.cancelled = True
        if isinstance(self.outcome, BaseException):
            raise self.outcome


class FakeMethod:
    def __init__(self, outcomes: list[Callable[[], FakeResponse]]) -> None:
        self.outcomes = outcomes
        self.sent: list[FakeResponse] = []
        self.arguments: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> FakeResponse:
        make = self.outcomes[min(len(self.sent), len(self.outcomes) - 1)]
        response = make()
        self.sent.append(response)
        self.arguments.append(args)
        return response


class FakeHandle:
    def __init__(self, **methods: FakeMethod) -> None:
        self.methods = methods

    def __getattr__(self, name: str) -> FakeMethod:
        return self.methods[name]

    def options(self, **_: Any) -> FakeHandle:
        return self


def stages(retries: int = 1, **handles: FakeHandle) -> Stages:
    empty = FakeHandle()
    return Stages(
        ServeHandle(handles.get("embedder", empty)),
        ServeHandle(handles.get("retriever", empty)),
        ServeHandle(handles.get("reranker", empty)),
        ServeHandle(handles.get("generator", empty)),
        retries=retries,
    )


def answer(value: Any) -> Callable[[], FakeResponse]:
    return lambda: FakeResponse(value)


def fail(error: BaseException) -> Callable[[], FakeResponse]:
    return lambda: FakeResponse(error)


REQUEST = GenerationRequest(messages=[ChatTurn("user", "q")])


@pytest.mark.parametrize(
    "lost", [ActorDiedError(), ActorUnavailableError("gone", None), RayServeException("up")]
)
def test_a_call_whose_replica_died_is_sent_again(lost: BaseException) -> None:
    score = FakeMethod([fail(lost), answer("scores")])
    client = stages(reranker=FakeHandle(score=score))
    # The fake hands back its placeholder as is, so the result is only an object here.
    scores: object = asyncio.run(client.score("q", ["d"]))
    assert scores == "scores"
    assert len(score.sent) == 2


def test_retries_are_bounded_then_the_stage_is_unavailable() -> None:
    score = FakeMethod([fail(ActorDiedError())])
    client = stages(retries=2, reranker=FakeHandle(score=score))
    with pytest.raises(StageUnavailable, match="reranker stage is unavailable"):
        asyncio.run(client.score("q", ["d"]))
    assert len(score.sent) == 3


def test_a_bug_in_a_stage_is_not_retried() -> None:
    score = FakeMethod([fail(ValueError("bad input"))])
    with pytest.raises(ValueError):
        asyncio.run(stages(reranker=FakeHandle(score=score)).score("q", ["d"]))
    assert len(score.sent) == 1


def test_a_full_stage_is_shed_at_once_with_its_retry_after() -> None:
    score = FakeMethod([fail(BackPressureError(4, 4, 429, 2.5))])
    with pytest.raises(StageOverloaded) as raised:
        asyncio.run(stages(reranker=FakeHandle(score=score)).score("q", ["d"]))
    assert (raised.value.status, raised.value.retry_after_s) == (429, 2.5)
    assert len(score.sent) == 1


def test_the_reranker_gets_only_texts_and_its_ranking_orders_the_callers_hits() -> None:
    hits = [Hit(Passage(f"p{i}", f"d{i}", f"題{i}", f"本文{i}"), 0.1 * i) for i in range(3)]
    scores = RerankScores(
        np.array([0.5, 2.0, 0.5], dtype=np.float32), np.array([0.4, 0.9, 0.4], dtype=np.float32)
    )
    rerank = FakeMethod([answer(scores.ranking(2))])
    ranked = asyncio.run(stages(reranker=FakeHandle(rerank=rerank)).rerank("q", hits, 2))
    assert rerank.arguments == [("q", ["題0\n本文0", "題1\n本文1", "題2\n本文2"], 2)]
    # Best first; of the two tied at 0.5 the earlier retrieval hit comes first.
    assert [h.passage for h in ranked] == [hits[1].passage, hits[0].passage]
    assert [(h.score, h.rerank_score) for h in ranked] == [
        (hits[1].score, 2.0),
        (hits[0].score, 0.5),
    ]
    assert [h.relevance for h in ranked] == pytest.approx([0.9, 0.4])


def test_retrieval_resends_only_the_call_whose_replica_died() -> None:
    # The vector comes back to the ingress before the search is sent: passing the
    # embedder's unresolved response on to the retriever left the search waiting until
    # the request's deadline when the embedder's node died (tests/cluster).
    embed = FakeMethod([fail(ActorDiedError()), answer("vector")])
    search = FakeMethod([fail(RayServeException("upstream died")), answer(["hit"])])
    client = stages(embedder=FakeHandle(embed_query=embed), retriever=FakeHandle(search=search))
    hits: object = asyncio.run(client.retrieve("q", 5))
    assert hits == ["hit"]
    assert len(embed.sent) == len(search.sent) == 2


def test_a_cancelled_call_cancels_its_serve_requests() -> None:
    for embed_outcome, search_outcome in (("hang", "hang"), ("vector", "hang")):
        embed = FakeMethod([answer(embed_outcome)])
        search = FakeMethod([answer(search_outcome)])
        client = stages(embedder=FakeHandle(embed_query=embed), retriever=FakeHandle(search=search))

        async def scenario(client: Stages = client) -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.retrieve("q", 5), 0.05)

        asyncio.run(scenario())
        waiting = embed if embed_outcome == "hang" else search
        assert len(waiting.sent) == 1 and waiting.sent[0].cancelled
        assert len(search.sent) == (embed_outcome != "hang")


def stream(*pieces: Any) -> Callable[[], FakeResponse]:
    return lambda: FakeResponse(pieces=list(pieces))


async def collect(pieces: AsyncIterator[GeneratedText]) -> list[GeneratedText]:
    return [p async for p in pieces]


def test_a_stream_is_resent_only_before_its_first_piece() -> None:
    text = GeneratedText("答え", finish_reason="stop")
    generate = FakeMethod([stream(ActorDiedError()), stream([STARTED], [text])])
    client = stages(generator=FakeHandle(generate_chunks=generate))
    assert asyncio.run(collect(client.generate(REQUEST))) == [STARTED, text]

    generate = FakeMethod([stream([STARTED], ActorDiedError()), stream([STARTED, text])])
    client = stages(generator=FakeHandle(generate_chunks=generate))
    with pytest.raises(StageUnavailable, match="generator"):
        asyncio.run(collect(client.generate(REQUEST)))
    assert len(generate.sent) == 1


def test_a_full_generator_is_shed_even_though_cancel_re_raises() -> None:
    generate = FakeMethod(
        [lambda: FakeResponse(BackPressureError(2, 2), [BackPressureError(2, 2)])]
    )
    client = stages(generator=FakeHandle(generate_chunks=generate))
    with pytest.raises(StageOverloaded):
        asyncio.run(collect(client.generate(REQUEST)))
    assert generate.sent[0].cancelled


def test_a_stream_left_early_is_cancelled() -> None:
    generate = FakeMethod([stream([STARTED], [GeneratedText("a")], "hang")])
    client = stages(generator=FakeHandle(generate_chunks=generate))

    async def scenario() -> None:
        pieces = client.generate(REQUEST)
        assert await anext(pieces) == STARTED
        await anext(pieces)
        await pieces.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())
    assert generate.sent[0].cancelled


def test_a_request_the_stage_rejects_is_not_resent_and_says_why() -> None:
    """What Ray delivers when the replica raised RequestRejected: a RayTaskError whose
    cause is the stage's error."""
    too_long = PromptTooLongError("the conversation needs 3000 prompt tokens")
    wrapped = RayTaskError("generate_chunks", "traceback", too_long)
    generate = FakeMethod([stream([STARTED], wrapped), stream([STARTED])])
    client = stages(generator=FakeHandle(generate_chunks=generate))
    with pytest.raises(StageRejected, match="3000 prompt tokens"):
        asyncio.run(collect(client.generate(REQUEST)))
    assert len(generate.sent) == 1
    score = FakeMethod([fail(RayTaskError("score", "traceback", too_long))])
    with pytest.raises(StageRejected) as raised:
        asyncio.run(stages(reranker=FakeHandle(score=score)).score("q", ["d"]))
    assert raised.value.stage == "reranker" and len(score.sent) == 1


def test_a_requests_search_settings_reach_the_retriever() -> None:
    embed = FakeMethod([answer("the vector")])
    search = FakeMethod([answer([])])
    client = stages(embedder=FakeHandle(embed_query=embed), retriever=FakeHandle(search=search))
    params = SearchParameters(nprobe=64, ef_search=200)
    assert asyncio.run(client.retrieve("q", 5, "docs", None, params)) == []
    (arguments,) = search.arguments
    assert arguments[1:] == (5, "docs", None, params)
