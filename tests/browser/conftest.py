from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from tests.browser.support import chromium, chromium_pages

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return chromium()


def serve_in_thread(app: FastAPI, port: int) -> Generator[str, None, None]:
    """Run ``app`` with uvicorn on loopback until the generator is closed."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def new_page(chromium_path: str) -> Iterator[Callable[..., Any]]:
    """Opens a page in a fresh browser context: ``new_page(viewport=..., ...)``."""
    with chromium_pages(chromium_path) as opener:
        yield opener


@pytest.fixture
def browser_page(new_page: Callable[..., Any]) -> Any:
    return new_page()
