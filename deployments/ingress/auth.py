"""Optional API keys: ``Authorization: Bearer <key>``, compared in constant time, each
limited to some endpoints and knowledge bases or not."""

from __future__ import annotations

import hmac
from collections.abc import Collection
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from deployments.ingress.config import FULL_ACCESS, Endpoint, Grant
from deployments.ingress.errors import error_body, note_error_type


def route_path(scope: Scope) -> str:
    """The request's path below the application's route prefix."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return (path[len(root) :] or "/") if root and path.startswith(root) else path


RETRIEVAL_PATH = "/retrieval"
"""Dify's External Knowledge API, whose errors have their own shape (``error_code``)."""
_GRANT = "jarag_grant"
"""Key in the request's ``scope["state"]`` (Starlette's ``request.state``)."""


def endpoint_of(path: str) -> Endpoint | None:
    """The endpoint group of a route path (None: any valid key may call it)."""
    if path == "/v1/chat/completions":
        return "chat"
    if path == "/v1/embeddings":
        return "embeddings"
    if path in ("/v1/rerank", "/rerank"):
        return "rerank"
    if path == RETRIEVAL_PATH:
        return "retrieval"
    if path.startswith("/tei/"):
        return "tei"
    if path == "/v1/models":
        return "models"
    return None


def request_grant(scope: Scope) -> Grant:
    """What the request's key may reach (everything when keys are off)."""
    state = scope.get("state") or {}
    grant = state.get(_GRANT, FULL_ACCESS)
    assert isinstance(grant, Grant)
    return grant


def dify_error(status: int, code: int, message: str) -> JSONResponse:
    """An error of the External Knowledge API: ``{"error_code", "error_msg"}``."""
    return JSONResponse({"error_code": code, "error_msg": message}, status_code=status)


class APIKeyMiddleware:
    """Lets a request through only with one of the keys, except to ``exempt_paths``, and
    only to the endpoints its key may call (403 beyond them); records the key's grant
    for the routes (knowledge bases).

    The key is never logged nor echoed; every configured key is compared, so the
    time taken does not tell which one (or which prefix) matched. /retrieval answers
    in Dify's shape: 1001 for a missing or malformed header, 1002 for a key that is
    wrong or may not use it (both 403, as Dify expects).
    """

    def __init__(
        self, app: ASGIApp, grants: list[tuple[bytes, Grant]], exempt_paths: Collection[str]
    ) -> None:
        self.app = app
        self.grants = grants
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        supplied = _bearer(scope)
        grant = self._grant(supplied) if supplied else None
        endpoint = endpoint_of(path)
        if grant is not None and grant.allows_endpoint(endpoint):
            state: dict[str, Any] = scope.setdefault("state", {})
            state[_GRANT] = grant
            await self.app(scope, receive, send)
            return
        if path == RETRIEVAL_PATH:
            note_error_type(scope, "invalid_api_key")
            if supplied is None:
                response = dify_error(
                    403, 1001, "invalid Authorization header format: expected 'Bearer <api-key>'"
                )
            elif grant is None:
                response = dify_error(403, 1002, "authorization failed: the API key is not valid")
            else:
                response = dify_error(
                    403, 1002, "authorization failed: this API key may not use /retrieval"
                )
        elif grant is None:
            body = error_body(401, "a valid API key is required: Authorization: Bearer <key>")
            body["error"]["code"] = "invalid_api_key"
            note_error_type(scope, "invalid_api_key")
            response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            body = error_body(403, f"this API key may not use the {endpoint} endpoints")
            body["error"]["code"] = "permission_denied"
            note_error_type(scope, "permission_denied")
            response = JSONResponse(body, status_code=403)
        await response(scope, receive, send)

    def _grant(self, supplied: bytes) -> Grant | None:
        """The grant of the key that matches, comparing every key."""
        matched: Grant | None = None
        for key, grant in self.grants:
            if hmac.compare_digest(supplied, key):
                matched = grant
        return matched


def _bearer(scope: Scope) -> bytes | None:
    """The key of an ``Authorization: Bearer <key>`` header; None when the header is
    missing or has another form."""
    header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, supplied = header.strip().partition(b" ")
    supplied = supplied.strip()
    if scheme.lower() != b"bearer" or not supplied:
        return None
    return supplied
