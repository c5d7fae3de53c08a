"""Coalescing a stream: the items that are ready at once travel together.

Every item a Serve deployment streams to its caller is one message between two
processes, which costs far more CPU than producing a piece of text does. Sent as
lists of whatever is ready, a fast engine's whole answer is one message, while a
slow engine's pieces still leave one by one, as soon as each is made.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _End(Generic[T]):
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


async def coalesced(items: AsyncIterator[T]) -> AsyncIterator[list[T]]:
    """``items`` regrouped into lists: each list holds the next item and every item
    that followed it without a wait. Order and errors are kept; closing or cancelling
    the result cancels the iteration of ``items``."""
    queue: asyncio.Queue[T | _End[T]] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in items:
                queue.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            queue.put_nowait(_End(error))
        else:
            queue.put_nowait(_End())

    task = asyncio.create_task(pump())
    try:
        while True:
            batch: list[T] = []
            item = await queue.get()
            while True:
                if isinstance(item, _End):
                    if batch:
                        yield batch
                    if item.error is not None:
                        raise item.error
                    return
                batch.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            yield batch
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
