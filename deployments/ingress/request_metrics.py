"""Every HTTP request counted and timed by endpoint and status, errors by type."""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.ingress.auth import route_path
from deployments.ingress.errors import noted_error_type
from deployments.metrics import IngressMetrics, endpoint_of

_STATUS_ERROR_TYPES = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    429: "overloaded",
    500: "internal_error",
    503: "unavailable",
    504: "deadline_exceeded",
}


class RequestMetricsMiddleware:
    """The outermost middleware: sees every response, the ones other middlewares send
    (401, 413) included, and times a streamed response until its last byte."""

    def __init__(self, app: ASGIApp, metrics: IngressMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        failure: str | None = None
        try:
            await self.app(scope, receive, watch)
        except BaseException as error:
            # Unhandled (answered 500 by Starlette's outer error middleware), or the
            # client went away and the request was cancelled.
            cancelled = isinstance(error, asyncio.CancelledError)
            failure = "cancelled" if cancelled else "internal_error"
            status = status or (499 if cancelled else 500)
            raise
        finally:
            endpoint = endpoint_of(route_path(scope))
            self.metrics.request(endpoint, status, time.perf_counter() - start)
            if failure is None and status >= 400:
                fallback = _STATUS_ERROR_TYPES.get(status, f"http_{status}")
                failure = noted_error_type(scope) or fallback
            if failure is not None:
                self.metrics.error(failure)
