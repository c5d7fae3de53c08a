"""GET /: a small chat page over the same API, served with a strict Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse

from deployments.ingress.errors import APIError

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).parent / "static"
_FILES = {"chat.js": "text/javascript", "chat.css": "text/css"}
# Scripts and styles only from this server, no inline code: corpus text shown on the
# page cannot run as script even if a bug ever inserted it as markup.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/")
async def home(request: Request) -> RedirectResponse:
    # root_path is the application's route prefix, so the page works under any prefix.
    return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/ui/")


@router.get("/ui/")
async def chat_page() -> FileResponse:
    return FileResponse(STATIC / "chat.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/ui/{name}")
async def asset(name: str) -> FileResponse:
    if name not in _FILES:
        raise APIError(404, f"no such file: {name}")
    return FileResponse(STATIC / name, media_type=_FILES[name], headers=SECURITY_HEADERS)
