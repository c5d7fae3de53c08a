"""The per-request deadline: one budget for the whole chain of stage calls.

The budget is ``IngressConfig.request_timeout_s``; a client may ask for less with
the ``X-Request-Timeout`` header (seconds). Each stage call gets what is left;
a call still running when the deadline passes is cancelled (Stages cancels
the Serve request, so the stage's replica stops working on it).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Header, Request

from deployments.ingress.config import IngressConfig

T = TypeVar("T")

DEADLINE_HEADER = "X-Request-Timeout"


class DeadlineExceeded(Exception):
    """The request's deadline passed while ``stage`` was working on it (HTTP 504)."""

    def __init__(self, stage: str, budget_s: float) -> None:
        super().__init__(
            f"the request did not finish within its deadline of {budget_s:g} s "
            f"(the {stage} stage was still working); it was cancelled"
        )
        self.stage = stage
        self.budget_s = budget_s


class StageTimeout(Exception):
    """A stage took longer than its own budget, before the request's deadline."""

    def __init__(self, stage: str, limit_s: float) -> None:
        super().__init__(f"the {stage} stage did not answer within {limit_s:g} s")
        self.stage = stage
        self.limit_s = limit_s


@dataclass(frozen=True, slots=True)
class Deadline:
    budget_s: float
    expires_at: float
    """``time.monotonic()`` at which the request is given up."""

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    async def within(
        self, awaitable: Awaitable[T], stage: str, stage_limit_s: float | None = None
    ) -> T:
        """``awaitable``'s result; cancelled and raised as DeadlineExceeded when the
        deadline passes, or as StageTimeout when ``stage_limit_s`` passes first."""
        remaining = self.remaining()
        if stage_limit_s is not None and stage_limit_s < remaining:
            try:
                return await asyncio.wait_for(awaitable, stage_limit_s)
            except asyncio.TimeoutError:  # not TimeoutError: they differ on Python 3.10
                raise StageTimeout(stage, stage_limit_s) from None
        try:
            return await asyncio.wait_for(awaitable, remaining)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(stage, self.budget_s) from None


async def request_deadline(
    request: Request,
    x_request_timeout: Annotated[
        float | None,
        Header(
            alias=DEADLINE_HEADER,
            gt=0,
            allow_inf_nan=False,
            description="Deadline of this request in seconds, over the whole chain of stages; "
            "at most the server's request_timeout_s (a larger value is lowered to it).",
        ),
    ] = None,
) -> Deadline:
    """FastAPI dependency: the deadline of this request, starting now. Async, so that
    FastAPI runs it on the event loop rather than through a worker thread."""
    config: IngressConfig = request.app.state.config
    budget = config.request_timeout_s
    if x_request_timeout is not None and math.isfinite(x_request_timeout):
        budget = min(budget, x_request_timeout)
    return Deadline.after(budget)
