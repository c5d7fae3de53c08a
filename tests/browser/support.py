"""What the browser tests share with the integration test that drives the page: Debian's
Chromium (never a downloaded browser), the folder screenshots go to, and axe-core."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
"""Screenshots of the page, kept after the run (gitignored)."""
AXE_VERSION = "4.10.3"
AXE_SCRIPT = REPO / "build" / "axe-core" / AXE_VERSION / "axe.min.js"
"""axe-core's script, fetched from the npm registry by `make browser-deps` (not committed)."""


def can_install() -> bool:
    """Whether this machine could install what is missing (root with apt-get): then a
    missing browser or tool is an error, not a reason to skip."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def missing(what: str) -> None:
    message = f"{what} is missing: run `make browser-deps`"
    if can_install():
        pytest.fail(message)
    pytest.skip(message)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing("Debian's chromium")
    assert path is not None
    return path


def axe_script() -> Path:
    """axe-core's minified script, fetched with npm on first use when it is not there."""
    if not AXE_SCRIPT.exists():
        npm = shutil.which("npm")
        if npm is None:
            missing("axe-core (npm to fetch it)")
        assert npm is not None
        fetch_axe(npm)
    return AXE_SCRIPT


def fetch_axe(npm: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", tmp, "--silent"],
            check=True,
            timeout=300,
            capture_output=True,
        )
        (archive,) = Path(tmp).glob("axe-core-*.tgz")
        with tarfile.open(archive) as tar:
            member = tar.extractfile("package/axe.min.js")
            assert member is not None
            AXE_SCRIPT.parent.mkdir(parents=True, exist_ok=True)
            AXE_SCRIPT.write_bytes(member.read())


@contextmanager
def chromium_pages(executable: str) -> Iterator[Any]:
    """Yields ``new_page(**context_options)``, which opens a page in a fresh browser
    context (its own storage); everything is closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)

        def new_page(**options: Any) -> Any:
            return browser.new_context(**options).new_page()

        try:
            yield new_page
        finally:
            browser.close()


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_script()))
    results: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]],
        }
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
