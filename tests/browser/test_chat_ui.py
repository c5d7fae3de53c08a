"""The chat page in headless Chromium: streaming answers, cited sources, no script injection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.embedder.config import HashingEmbedderConfig
from deployments.ingress.app import create_app
from deployments.ingress.config import IngressConfig, RetrievalDefaults
from serve.indexing.build import BuildSettings, build_index
from tests.browser.conftest import serve_in_thread
from tests.conftest import TINY_DOCUMENTS
from tests.support import RETRIEVAL, free_port, local_stages, write_jsonl

pytestmark = pytest.mark.browser

TOP_3 = RetrievalDefaults(top_k=RETRIEVAL.top_k, top_n=3)
"""Three sources per answer, as the page shows them."""

HOSTILE = {
    "id": "hostile",
    "title": '<img src=x onerror="window.__pwned = 1">札幌の記事',
    "text": "<script>window.__pwned = 2</script>札幌市は北海道の道庁所在地である。",
    "url": "javascript:window.__pwned = 3",
}


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[str]:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [*TINY_DOCUMENTS, HOSTILE])
    root = tmp_path / "index"
    build_index([corpus], root, HashingEmbedderConfig(), BuildSettings(progress=False))
    stages = local_stages(root)
    yield from serve_in_thread(create_app(stages, IngressConfig(), TOP_3), free_port())


def ask(page: Any, text: str, turn: int) -> Any:
    page.fill("#question", text)
    page.click("#send")
    page.wait_for_selector(f"section.turn:nth-of-type({turn}) .sources li")
    page.wait_for_function("!document.getElementById('send').disabled")
    return page.locator("section.turn").nth(turn - 1)


def test_chat_page_streams_an_answer_with_linked_sources(
    browser_page: Any, chat_server: str
) -> None:
    page = browser_page
    page.goto(chat_server)
    assert page.url.endswith("/ui/")
    page.wait_for_function("document.getElementById('health').textContent === '稼働中'")
    turn = ask(page, "沖縄県の県庁所在地はどこですか？", 1)
    answer = turn.locator(".answer")
    assert "那覇市" in answer.inner_text()
    citation = answer.locator("a.citation").first
    target = citation.get_attribute("href")
    assert target is not None and target.startswith("#turn-0-source-")
    cited = turn.locator(f"li{target}")
    assert cited.get_attribute("class") == "cited"
    assert "沖縄県" in cited.inner_text()
    # A second turn sends the history along and gets its own answer.
    second = ask(page, "京都府の府庁所在地は？", 2)
    assert "京都市" in second.locator(".answer").inner_text()


def test_corpus_markup_is_shown_as_text_and_never_runs(browser_page: Any, chat_server: str) -> None:
    page = browser_page
    page.goto(f"{chat_server}/ui/")
    turn = ask(page, "札幌市は何の所在地ですか？", 1)
    sources = turn.locator(".sources").inner_text()
    assert "<script>window.__pwned = 2</script>" in sources
    assert '<img src=x onerror="window.__pwned = 1">' in sources
    assert page.evaluate("window.__pwned") is None
    assert turn.locator(".sources img, .sources script").count() == 0
    hrefs = [a.get_attribute("href") for a in turn.locator(".sources a").all()]
    assert not any(h and h.startswith("javascript:") for h in hrefs)


def test_page_is_served_with_a_strict_content_security_policy(chat_server: str) -> None:
    import requests

    response = requests.get(f"{chat_server}/ui/", timeout=10)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert requests.get(f"{chat_server}/ui/../../etc/passwd", timeout=10).status_code == 404


def test_page_asks_for_the_api_key_and_uses_it(
    browser_page: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UI_TEST_KEY", "s3cret-key")
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCUMENTS)
    root = tmp_path / "index"
    build_index([corpus], root, HashingEmbedderConfig(), BuildSettings(progress=False))
    stages = local_stages(root)
    config = IngressConfig.model_validate({"auth": {"api_key_env": ["UI_TEST_KEY"]}})
    server = serve_in_thread(create_app(stages, config, TOP_3), free_port())
    url = next(server)
    try:
        page = browser_page
        prompts: list[str] = []

        def answer_prompt(dialog: Any) -> None:
            prompts.append(dialog.message)
            dialog.accept("s3cret-key")

        page.on("dialog", answer_prompt)
        page.goto(url)
        turn = ask(page, "京都府の府庁所在地は？", 1)
        assert "京都市" in turn.locator(".answer").inner_text()
        assert len(prompts) == 1 and "API キー" in prompts[0]
        ask(page, "沖縄県の県庁所在地は？", 2)
        assert len(prompts) == 1, "the key is kept for the tab"
    finally:
        server.close()
