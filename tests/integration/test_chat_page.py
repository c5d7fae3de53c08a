"""The chat page on a real local Ray graph whose Generator replica is killed: the page
says the stage is down, still shows the sources found, and recovers with the replica."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import serve

from deployments.ingress.config import IngressConfig
from deployments.retriever.config import IndexConfig
from serve.app import build_graph
from serve.config import AppConfig
from tests.browser.engines import HeldStartGenerator
from tests.browser.support import chromium, chromium_pages, screenshot
from tests.integration.conftest import ServeCluster

pytestmark = [pytest.mark.integration, pytest.mark.browser]

APP = "chatpage"


@pytest.fixture(scope="module")
def held_graph(
    serve_cluster: ServeCluster, demo_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The demo graph whose Generator replicas wait to start while the yielded file exists."""
    hold = tmp_path_factory.mktemp("chat-page") / "hold-generator"
    config = AppConfig(
        index=IndexConfig(path=str(demo_index)),
        ingress=IngressConfig(generator_start_timeout_s=4, health_timeout_s=3),
    )
    engine = functools.partial(HeldStartGenerator, hold_file=str(hold))
    serve.run(build_graph(config, engines={"generator": engine}), name=APP, route_prefix=f"/{APP}")
    try:
        yield serve_cluster.url(f"/{APP}"), hold
    finally:
        hold.unlink(missing_ok=True)
        serve.delete(APP)


def kill_generator_replica() -> None:
    """ray.kill on the Generator replica's actor, found by its name in Serve's namespace."""
    replicas = [
        actor
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(f"SERVE_REPLICA::{APP}#Generator#")
    ]
    assert len(replicas) == 1, replicas
    actor = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
    ray.kill(actor, no_restart=True)


def wait_until(page: Any, expression: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        time.sleep(0.1)


def ask(page: Any, text: str, number: int) -> Any:
    page.fill("#question", text)
    page.press("#question", "Enter")
    wait_until(
        page,
        f"(document.querySelectorAll('#conversation .turn')[{number - 1}] || {{}})"
        ".getAttribute?.('aria-busy') === 'false'",
    )
    return page.locator("#conversation .turn").nth(number - 1)


def test_page_shows_the_generator_down_and_recovers(held_graph: tuple[str, Path]) -> None:
    url, hold = held_graph
    with chromium_pages(chromium()) as new_page:
        page = new_page(viewport={"width": 1100, "height": 760})
        page.goto(f"{url}/")
        wait_until(page, "document.getElementById('health').dataset.state === 'ready'")
        first = ask(page, "北海道の道庁所在地はどこですか？", 1)
        assert "札幌市" in first.locator(".answer-body").inner_text()

        hold.write_text("held", encoding="utf-8")
        kill_generator_replica()
        turn = ask(page, "沖縄県の県庁所在地はどこですか？", 2)
        notice = turn.locator(".notice").inner_text()
        assert "回答を生成できませんでした" in notice, notice
        assert "generator" in notice
        # The sources found for the question are still there.
        assert "沖縄県" in turn.locator(".turn-sources").inner_text()
        wait_until(page, "document.getElementById('health').dataset.state === 'down'")
        banner = page.locator("#banner").inner_text()
        assert "generator" in banner
        screenshot(page, "generator-killed")

        hold.unlink()
        wait_until(page, "document.getElementById('health').dataset.state === 'ready'", 120)
        again = ask(page, "沖縄県の県庁所在地はどこですか？", 3)
        assert "那覇市" in again.locator(".answer-body").inner_text()
        assert again.locator(".notice").count() == 0
