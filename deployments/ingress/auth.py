"""Optional API keys: ``Authorization: Bearer <key>``, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Collection

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from deployments.ingress.errors import error_body, note_error_type


def route_path(scope: Scope) -> str:
    """The request's path below the application's route prefix."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return (path[len(root) :] or "/") if root and path.startswith(root) else path


class APIKeyMiddleware:
    """Lets a request through only with one of ``keys``, except to ``exempt_paths``.

    The key is never logged nor echoed; every configured key is compared, so the
    time taken does not tell which one (or which prefix) matched.
    """

    def __init__(self, app: ASGIApp, keys: list[bytes], exempt_paths: Collection[str]) -> None:
        self.app = app
        self.keys = keys
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        if self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = error_body(401, "a valid API key is required: Authorization: Bearer <key>")
        body["error"]["code"] = "invalid_api_key"
        note_error_type(scope, "invalid_api_key")
        response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, supplied = header.partition(b" ")
        if scheme.lower() != b"bearer":
            supplied = b""
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(supplied.strip(), key)
        return matched and bool(supplied.strip())
