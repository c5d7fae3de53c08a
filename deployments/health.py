"""Health probes of the stage deployments: each one runs its engine on a real input."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

PROBE_TIMEOUT_S = 10.0
"""A probe still running after this long fails the check: the engine is wedged. Serve's
own ``health_check_timeout_s`` (the ``deployments:`` section) bounds it as well."""


async def probe(stage: str, check: Awaitable[T], timeout_s: float = PROBE_TIMEOUT_S) -> T:
    """``check``'s result, or a RuntimeError that says the engine did not answer."""
    try:
        return await asyncio.wait_for(check, timeout_s)
    except asyncio.TimeoutError:
        raise RuntimeError(
            f"{stage} health probe got no answer from the engine within {timeout_s:g} s"
        ) from None
