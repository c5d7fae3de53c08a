"""JSON errors in the OpenAI shape: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from deployments.ingress.config import IngressConfig
from deployments.ingress.deadline import DeadlineExceeded
from deployments.ingress.stages import StageOverloaded, StageRejected, StageUnavailable

logger = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    """An error the client should see, with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers


def error_body(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(
                status, "server_error" if status >= 500 else "invalid_request_error"
            ),
            "param": param,
            "code": code,
        }
    }


_ERROR_TYPE = "jarag_error_type"
"""Key in the request's ``scope["state"]`` (Starlette's ``request.state``)."""


def note_error_type(scope: Scope, error_type: str | None) -> None:
    """Names the error a response reports (its ``code``), for the error metric."""
    if error_type:
        state: dict[str, Any] = scope.setdefault("state", {})
        state[_ERROR_TYPE] = error_type


def noted_error_type(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    noted = state.get(_ERROR_TYPE)
    return str(noted) if noted else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        note_error_type(request.scope, error.code)
        body = error_body(error.status, error.message, error.code, error.param)
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    @app.exception_handler(StageOverloaded)
    async def overloaded(request: Request, error: StageOverloaded) -> JSONResponse:
        note_error_type(request.scope, "overloaded")
        body = error_body(error.status, str(error), "overloaded")
        headers = {"Retry-After": retry_after(request, error.retry_after_s)}
        return JSONResponse(body, status_code=error.status, headers=headers)

    @app.exception_handler(StageRejected)
    async def rejected(request: Request, error: StageRejected) -> JSONResponse:
        note_error_type(request.scope, "invalid_request")
        body = error_body(400, str(error), "invalid_request")
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StageUnavailable)
    async def unavailable(request: Request, error: StageUnavailable) -> JSONResponse:
        note_error_type(request.scope, "stage_unavailable")
        logger.warning("%s", error)
        body = error_body(503, str(error), "stage_unavailable")
        return JSONResponse(body, status_code=503, headers={"Retry-After": retry_after(request)})

    @app.exception_handler(DeadlineExceeded)
    async def deadline_exceeded(request: Request, error: DeadlineExceeded) -> JSONResponse:
        note_error_type(request.scope, "deadline_exceeded")
        return JSONResponse(error_body(504, str(error), "deadline_exceeded"), status_code=504)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        note_error_type(request.scope, "invalid_request")
        problems = [_describe(problem) for problem in error.errors()[:10]]
        if request.url.path.endswith("/retrieval"):
            # Dify's External Knowledge API has its own error shape.
            message = "invalid retrieval request: " + "; ".join(problems)
            return JSONResponse({"error_code": 400, "error_msg": message}, status_code=400)
        body = error_body(400, "invalid request: " + "; ".join(problems), "invalid_request")
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        body = error_body(error.status_code, str(error.detail))
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, "internal server error"), status_code=500)


def retry_after(request: Request, seconds: float | None = None) -> str:
    """A Retry-After value: the stage's own when Serve gave one, else the configured one."""
    config: IngressConfig = request.app.state.config
    return str(max(0, math.ceil(seconds if seconds is not None else config.retry_after_s)))


def _describe(problem: Any) -> str:
    location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
    if problem.get("type") == "json_invalid":
        return "the body is not valid JSON"
    return f"{location or 'body'}: {problem.get('msg', 'invalid')}"
