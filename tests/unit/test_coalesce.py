"""A stream coalesced into lists: what is ready at once travels together, what comes
later comes later, errors and cancellation pass through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from deployments.coalesce import coalesced


async def collect(chunks: AsyncIterator[list[int]]) -> list[list[int]]:
    return [chunk async for chunk in chunks]


def test_items_ready_at_once_come_as_one_list() -> None:
    async def ready() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    assert asyncio.run(collect(coalesced(ready()))) == [[0, 1, 2, 3, 4]]


def test_an_item_is_sent_without_waiting_for_the_next() -> None:
    async def paced() -> AsyncIterator[int]:
        yield 0
        yield 1
        await asyncio.sleep(0.05)
        yield 2

    async def scenario() -> tuple[list[int], float, list[list[int]]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        chunks = coalesced(paced())
        first = await anext(chunks)
        waited = loop.time() - start
        return first, waited, await collect(chunks)

    first, waited, rest = asyncio.run(scenario())
    assert first == [0, 1] and waited < 0.04
    assert rest == [[2]]


def test_an_error_follows_the_items_before_it() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ValueError("engine failed")

    async def scenario() -> list[list[int]]:
        received = []
        with pytest.raises(ValueError, match="engine failed"):
            async for chunk in coalesced(failing()):
                received.append(chunk)
        return received

    assert asyncio.run(scenario()) == [[1]]


def test_closing_early_cancels_the_source() -> None:
    cancelled = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.Event().wait()
            yield 2
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def scenario() -> None:
        chunks = coalesced(endless())
        assert await anext(chunks) == [1]
        await chunks.aclose()  # type: ignore[attr-defined]
        assert cancelled.is_set()

    asyncio.run(scenario())
