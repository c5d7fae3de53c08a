"""The chat page in headless Chromium: streamed answers, citations opening their source,
follow-ups, stop, languages, settings, error states, phone width, accessibility, and
server text that never runs as script. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from deployments.embedder.config import HashingEmbedderConfig
from deployments.ingress.app import create_app
from deployments.ingress.config import IngressConfig, RetrievalDefaults
from serve.indexing.build import BuildSettings, build_index
from tests.browser.conftest import serve_in_thread
from tests.browser.engines import PacedGenerator
from tests.browser.support import screenshot, serious_violations
from tests.conftest import TINY_DOCUMENTS
from tests.support import RETRIEVAL, free_port, local_stages, write_jsonl

pytestmark = pytest.mark.browser

TOP_3 = RetrievalDefaults(top_k=RETRIEVAL.top_k, top_n=3)
"""Three sources per answer."""

HOSTILE = {
    "id": "hostile",
    "title": '<img src=x onerror="window.__pwned = 1">札幌の記事',
    "text": "<script>window.__pwned = 2</script>札幌市は北海道の道庁所在地である。",
    "url": "javascript:window.__pwned = 3",
}
PHONE = {"width": 375, "height": 760}
DESKTOP = {"width": 1280, "height": 820}


@pytest.fixture
def paced() -> PacedGenerator:
    return PacedGenerator()


@pytest.fixture
def tiny_server(tmp_path: Path, paced: PacedGenerator) -> Iterator[str]:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [*TINY_DOCUMENTS, HOSTILE])
    root = tmp_path / "index"
    build_index([corpus], root, HashingEmbedderConfig(), BuildSettings(progress=False))
    stages = local_stages(root, generator=paced)
    yield from serve_in_thread(create_app(stages, IngressConfig(), TOP_3), free_port())


@pytest.fixture
def demo_server(demo_index: Path, paced: PacedGenerator) -> Iterator[str]:
    stages = local_stages(demo_index, generator=paced)
    yield from serve_in_thread(create_app(stages, IngressConfig(), TOP_3), free_port())


def wait_until(page: Any, expression: str, arg: Any = None, timeout_s: float = 60) -> None:
    """Polls a JavaScript expression (or function of ``arg``) until it is truthy. The
    page's CSP refuses the string evaluation Playwright's wait_for_function polls with."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        time.sleep(0.05)


def turn_done(page: Any, number: int) -> Any:
    """The ``number``-th turn (1-based) once its answer has ended."""
    wait_until(
        page,
        "n => { const t = document.querySelectorAll('#conversation .turn')[n - 1];"
        " return t && t.getAttribute('aria-busy') === 'false'; }",
        number,
    )
    return page.locator("#conversation .turn").nth(number - 1)


def ask(page: Any, text: str, number: int) -> Any:
    page.fill("#question", text)
    page.press("#question", "Enter")
    return turn_done(page, number)


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    wait_until(page, "document.getElementById('health').dataset.state === 'ready'")


def test_answer_streams_and_a_citation_opens_its_source(
    new_page: Callable[..., Any], tiny_server: str
) -> None:
    page = new_page(viewport=DESKTOP)
    page.goto(tiny_server)
    assert page.url.endswith("/ui/")
    wait_until(page, "document.getElementById('health').textContent === '稼働中'")
    assert page.evaluate("document.documentElement.lang") == "ja"
    # Every text the answer shows while it streams, sampled at each animation frame.
    page.evaluate(
        """() => {
        window.__paints = [];
        const sample = () => {
            const body = document.querySelector('#conversation .turn .answer-body');
            const text = body ? body.innerText.trim() : '';
            const last = window.__paints[window.__paints.length - 1];
            if (text && text !== last) window.__paints.push(text);
            requestAnimationFrame(sample);
        };
        requestAnimationFrame(sample);
    }"""
    )
    turn = ask(page, "北海道の道庁所在地はどこですか？", 1)
    final = turn.locator(".answer-body").inner_text().strip()
    assert "札幌市" in final
    paints: list[str] = page.evaluate("window.__paints")
    assert paints[0] == "検索して回答を作成しています…"
    partial = [p for p in paints[1:] if p != final]
    assert len(partial) >= 2, f"the answer appeared at once: {paints}"
    assert all(final.startswith(p) for p in partial), paints

    citation = turn.locator("a.citation").first
    number = citation.inner_text().strip("[]")
    citation.click()
    panel = page.locator("#sources-panel")
    panel.wait_for(state="visible")
    selected = panel.locator("li.selected")
    assert selected.get_attribute("id", timeout=5000) is not None
    assert selected.locator(".number").inner_text() == f"[{number}]"
    assert "北海道" in selected.locator(".title").inner_text()
    assert selected.locator("a.title").get_attribute("href") == "https://example.org/hokkaido"
    # The part of the passage the answer used is marked, and it is part of the answer.
    marked = selected.locator("mark").all_inner_texts()
    said = re.sub(r"\[\d+\]", "", final)
    assert sum(map(len, marked)) >= 5 and all(m in said for m in marked), marked
    assert page.evaluate("document.activeElement.id") == selected.get_attribute("id")
    # Relevance reads as a label, never as a raw number.
    panel_text = panel.inner_text()
    # (On this three-document corpus the lexical reranker's relevance stays under the
    # medium threshold, so the sources carry no label at all.)
    assert "関連度: 低" not in panel_text
    assert not re.search(r"\d\.\d", panel_text)
    screenshot(page, "desktop-answer-with-sources")
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.classList.contains('citation')")


def test_follow_up_question_gets_the_first_answers_subject(
    new_page: Callable[..., Any], demo_server: str
) -> None:
    page = new_page(viewport=DESKTOP)
    open_page(page, demo_server)
    first = ask(page, "日本で一番面積が大きい都道府県はどこですか？", 1)
    assert "北海道" in first.locator(".answer-body").inner_text()
    second = ask(page, "そこの県庁所在地は？", 2)
    assert "札幌" in second.locator(".answer-body").inner_text()
    titles = second.locator(".turn-sources .chip").all_inner_texts()
    assert titles and "北海道" in titles[0], titles
    second.locator(".turn-sources .chip").first.click()
    assert "北海道" in page.locator("#sources-list li.selected .title").inner_text()
    screenshot(page, "chat")


def test_stop_aborts_the_stream_and_the_server_cancels_the_generation(
    browser_page: Any, tiny_server: str, paced: PacedGenerator
) -> None:
    page = browser_page
    open_page(page, tiny_server)
    page.fill("#question", "[endless] 北海道について教えて")
    page.press("#question", "Enter")
    page.locator("#stop").wait_for(state="visible")
    wait_until(
        page,
        "(document.querySelector('#conversation .answer-body') || {}).innerText?.includes('…')",
    )
    page.keyboard.press("Escape")
    turn = turn_done(page, 1)
    assert paced.cancelled.wait(15), "the generator was not cancelled"
    health = requests.get(f"{tiny_server}/healthz", timeout=30).json()
    assert health["stages"]["generator"]["generations_cancelled"] >= 1
    assert "停止しました" in turn.inner_text()
    assert page.locator("#stop").is_hidden()
    assert not page.locator("#send").is_disabled()
    # The button stops a generation as well; the partial answer stays, with a retry.
    paced.cancelled.clear()
    page.fill("#question", "[endless] もう一度")
    page.click("#send")
    wait_until(
        page,
        "(document.querySelectorAll('#conversation .answer-body')[1] || {}).innerText"
        "?.includes('…')",
    )
    page.click("#stop")
    turn = turn_done(page, 2)
    assert paced.cancelled.wait(15)
    assert turn.locator("button.retry").count() == 1


def test_markdown_from_an_llm_is_rendered_and_stays_safe(
    browser_page: Any, tiny_server: str
) -> None:
    page = browser_page
    open_page(page, tiny_server)
    turn = ask(page, "[markdown] 北海道の概要", 1)
    body = turn.locator(".answer-body")
    assert body.locator("h4").inner_text() == "北海道の概要"
    assert body.locator("strong").inner_text() == "札幌市"
    assert body.locator("em").inner_text() == "面積"
    assert body.locator("ul > li").all_inner_texts() == ["日本の最北端", "冬は 雪 が多い"]
    assert body.locator("ul code").inner_text() == "雪"
    assert body.locator("ol > li").count() == 2
    assert body.locator("a.citation").inner_text() == "[1]"
    links = body.locator("a:not(.citation)")
    assert links.count() == 1 and links.get_attribute("href") == "https://example.org/safe"
    assert "危険なリンク" in body.inner_text()
    code = body.locator("pre code").inner_text()
    assert "<b>太字ではない</b><script>" in code
    assert body.locator("b, script").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_corpus_markup_is_shown_as_text_and_never_runs(browser_page: Any, tiny_server: str) -> None:
    page = browser_page
    open_page(page, tiny_server)
    turn = ask(page, "札幌市は何の所在地ですか？", 1)
    turn.locator(".turn-sources .chip").first.click()
    sources = page.locator("#sources-list")
    sources.wait_for(state="visible")
    text = sources.inner_text() + turn.inner_text()
    assert "<script>window.__pwned = 2</script>" in text
    assert '<img src=x onerror="window.__pwned = 1">' in text
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#conversation img, #sources-list img, #sources-list script").count() == 0
    hrefs = [a.get_attribute("href") for a in page.locator("a").all()]
    assert not any(h and h.startswith("javascript:") for h in hrefs)


def test_history_survives_a_reload_and_new_conversation_clears_it(
    browser_page: Any, tiny_server: str
) -> None:
    page = browser_page
    open_page(page, tiny_server)
    ask(page, "沖縄県の県庁所在地はどこですか？", 1)
    ask(page, "京都府の府庁所在地は？", 2)
    page.reload()
    page.wait_for_selector("#conversation .turn")
    turns = page.locator("#conversation .turn")
    assert turns.count() == 2
    assert "那覇市" in turns.nth(0).inner_text() and "京都市" in turns.nth(1).inner_text()
    stored = json.loads(page.evaluate("localStorage.getItem('ja-rag-serve-conversation')"))
    assert [t["question"] for t in stored["turns"]] == [
        "沖縄県の県庁所在地はどこですか？",
        "京都府の府庁所在地は？",
    ]
    page.click("#new-chat")
    assert turns.count() == 0
    assert page.evaluate("localStorage.getItem('ja-rag-serve-conversation')") is None
    page.reload()
    wait_until(page, "document.getElementById('health').dataset.state === 'ready'")
    assert page.locator("#conversation .turn").count() == 0


def test_language_switch_to_english_and_back(browser_page: Any, tiny_server: str) -> None:
    page = browser_page
    open_page(page, tiny_server)
    ask(page, "京都府の府庁所在地は？", 1)
    page.click("#lang")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("#send").inner_text() == "Send"
    assert page.locator("#health").inner_text() == "Ready"
    assert page.get_attribute("#question", "placeholder") == "Ask a question"
    assert "Copy" in page.locator("#conversation .turn").inner_text()
    page.reload()
    wait_until(page, "document.getElementById('health').textContent === 'Ready'")
    assert page.locator("#new-chat").inner_text() == "New conversation"
    screenshot(page, "english")
    page.click("#lang")
    assert page.evaluate("document.documentElement.lang") == "ja"
    assert page.locator("#send").inner_text() == "送信"


def test_empty_question_is_refused_on_the_page(browser_page: Any, tiny_server: str) -> None:
    page = browser_page
    open_page(page, tiny_server)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "chat/completions" in r.url else None)
    page.fill("#question", "   ")
    page.press("#question", "Enter")
    assert page.locator("#ask-error").inner_text() == "質問を入力してください。"
    assert page.get_attribute("#question", "aria-invalid") == "true"
    assert page.locator("#conversation .turn").count() == 0 and not requests
    # Shift+Enter adds a line instead of sending.
    page.fill("#question", "一行目")
    page.press("#question", "Shift+Enter")
    page.keyboard.type("二行目")
    assert page.input_value("#question") == "一行目\n二行目"
    assert page.locator("#ask-error").inner_text() == ""
    assert page.locator("#conversation .turn").count() == 0


def test_settings_choose_knowledge_base_passages_and_temperature(
    browser_page: Any, tiny_server: str
) -> None:
    page = browser_page
    models = {
        "object": "list",
        "data": [
            {"id": "ja-rag", "object": "model", "created": 0, "owned_by": "x", "kind": "rag",
             "knowledge_base": "default"},
            {"id": "ja-rag/default", "object": "model", "created": 0, "owned_by": "x",
             "kind": "rag", "knowledge_base": "default"},
            {"id": "ja-rag/manuals", "object": "model", "created": 0, "owned_by": "x",
             "kind": "rag", "knowledge_base": "manuals", "description": "社内マニュアル"},
            {"id": "extractive", "object": "model", "created": 0, "owned_by": "x",
             "kind": "chat"},
        ],
    }  # fmt: skip
    page.route("**/v1/models", lambda route: route.fulfill(json=models))
    bodies: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: bodies.append(json.loads(r.post_data)) if "chat/completions" in r.url else None,
    )
    open_page(page, tiny_server)
    page.click("#settings-toggle")
    assert page.get_attribute("#settings-toggle", "aria-expanded") == "true"
    page.locator("#kb-field").wait_for(state="visible")
    options = page.locator("#kb option").all_inner_texts()
    assert options == ["default（既定）", "manuals: 社内マニュアル"]
    page.fill("#top-n", "2")
    page.fill("#temperature", "0.3")
    page.select_option("#kb", "ja-rag/manuals")  # a change event saves the settings
    page.select_option("#kb", "")
    turn = ask(page, "京都府の府庁所在地は？", 1)
    assert bodies[-1]["rag"] == {"top_n": 2} and bodies[-1]["temperature"] == 0.3
    assert "model" not in bodies[-1]
    assert turn.locator(".turn-sources .chip").count() == 2
    page.select_option("#kb", "ja-rag/manuals")
    page.reload()
    wait_until(page, "document.getElementById('kb').value === 'ja-rag/manuals'")
    assert page.input_value("#top-n") == "2"
    page.fill("#question", "京都府の府庁所在地は？")
    page.press("#question", "Enter")
    wait_until(page, "document.querySelector('#conversation .turn:last-child .error')")
    assert bodies[-1]["model"] == "ja-rag/manuals"
    # This server has no such knowledge base: its JSON error is shown.
    error = page.locator("#conversation .turn").last.locator(".error").inner_text()
    assert "HTTP 404" in error and "manuals" in error


def sse(*payloads: object) -> str:
    return "".join(f"data: {json.dumps(p, ensure_ascii=False)}\n\n" for p in payloads)


def chunk(content: str | None = None, **extra: object) -> dict[str, object]:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "ja-rag",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        **extra,
    }


def test_error_states_json_error_sse_error_degraded_and_retry(
    browser_page: Any, tiny_server: str
) -> None:
    page = browser_page
    open_page(page, tiny_server)
    busy = {"error": {"message": "the generator stage is overloaded", "type": "x", "code": "y"}}
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=503, json=busy, headers={"Retry-After": "2"}),
    )
    turn = ask(page, "京都府の府庁所在地は？", 1)
    error = turn.locator(".error")
    assert error.get_attribute("role") == "alert"
    assert "HTTP 503" in error.inner_text() and "overloaded" in error.inner_text()
    assert "2 秒" in error.inner_text()
    screenshot(page, "error-json")
    page.unroute("**/v1/chat/completions")
    turn.locator("button.retry").click()
    turn = turn_done(page, 1)
    assert page.locator("#conversation .turn").count() == 1
    assert "京都市" in turn.locator(".answer-body").inner_text()
    assert turn.locator(".error").count() == 0

    broken = sse(chunk("途中まで"), {"error": {"message": "deadline passed", "code": "x"}})
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200, body=broken + "data: [DONE]\n\n", content_type="text/event-stream"
        ),
    )
    turn = ask(page, "沖縄県の県庁所在地は？", 2)
    assert "途中まで" in turn.locator(".answer-body").inner_text()
    assert "deadline passed" in turn.locator(".error").inner_text()

    degraded = sse(
        chunk("答え[1]"),
        chunk(
            None,
            sources=[
                {"index": 1, "passage_id": "p", "doc_id": "d", "title": "京都府", "url": None,
                 "text": "京都府の府庁所在地は京都市である。", "score": 0.4,
                 "rerank_score": None, "relevance": None, "cited": True, "metadata": {}}
            ],
            degraded=["reranker"],
            notice="the reranker stage is unavailable",
        ),
    )  # fmt: skip
    page.unroute("**/v1/chat/completions")
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200, body=degraded + "data: [DONE]\n\n", content_type="text/event-stream"
        ),
    )
    turn = ask(page, "京都府は？", 3)
    notice = turn.locator(".notice").inner_text()
    assert "再ランキングを使わずに" in notice and "the reranker stage is unavailable" in notice
    turn.locator("a.citation").click()
    assert "関連度" not in page.locator("#sources-list").inner_text()


def test_relevance_reads_as_high_medium_or_nothing(browser_page: Any, tiny_server: str) -> None:
    page = browser_page
    open_page(page, tiny_server)

    def source(index: int, relevance: float) -> dict[str, object]:
        return {"index": index, "passage_id": f"p{index}", "doc_id": f"d{index}",
                "title": f"資料{index}", "url": None, "text": "京都府の府庁所在地は京都市である。",
                "score": 0.4, "rerank_score": 1.0, "relevance": relevance, "cited": True,
                "metadata": {}}  # fmt: skip

    body = sse(chunk("京都市です[1][2][3]"), chunk(None, sources=[
        source(1, 0.9), source(2, 0.1), source(3, 0.01)
    ]))  # fmt: skip
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=200, body=body, content_type="text/event-stream"),
    )
    turn = ask(page, "京都府の府庁所在地は？", 1)
    turn.locator(".citation").first.click()
    items = page.locator("#sources-panel li")
    assert "関連度: 高" in items.nth(0).inner_text()
    assert "関連度: 中" in items.nth(1).inner_text()
    assert "関連度" not in items.nth(2).inner_text()
    assert not re.search(r"\d\.\d", page.locator("#sources-panel").inner_text())


def test_starting_up_is_shown_until_the_server_is_ready(
    browser_page: Any, tiny_server: str
) -> None:
    page = browser_page
    starting = {"status": "degraded", "stages": {"generator": {"status": "down"}}}
    page.route("**/healthz", lambda route: route.fulfill(status=503, json=starting))
    page.goto(tiny_server)
    wait_until(page, "document.getElementById('health').dataset.state === 'starting'")
    assert page.locator("#health").inner_text() == "起動中…"
    banner = page.locator("#banner")
    assert "起動" in banner.inner_text() and "generator" in banner.inner_text()
    screenshot(page, "starting")
    page.unroute("**/healthz")
    wait_until(page, "document.getElementById('health').dataset.state === 'ready'")
    assert banner.is_hidden()


def test_copy_puts_the_answer_on_the_clipboard(
    new_page: Callable[..., Any], tiny_server: str
) -> None:
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    open_page(page, tiny_server)
    turn = ask(page, "京都府の府庁所在地は？", 1)
    turn.locator("button.copy").click()
    wait_until(page, "document.querySelector('button.copy').textContent === 'コピーしました'")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "京都市" in copied and "[1]" in copied


def test_phone_width_has_no_horizontal_scroll(
    new_page: Callable[..., Any], tiny_server: str
) -> None:
    page = new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    open_page(page, tiny_server)
    turn = ask(page, "北海道の道庁所在地はどこですか？", 1)
    ask(page, "[markdown] 北海道", 2)
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert page.evaluate(overflow) <= 0
    turn.locator("a.citation").first.click()
    page.locator("#sources-panel").wait_for(state="visible")
    assert page.evaluate(overflow) <= 0
    box = page.locator("#sources-panel").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    screenshot(page, "phone-sources")
    page.click("#close-sources")
    page.click("#settings-toggle")
    assert page.evaluate(overflow) <= 0
    screenshot(page, "phone-settings", full_page=True)


def test_axe_finds_no_serious_or_critical_violations(
    new_page: Callable[..., Any], tiny_server: str
) -> None:
    # axe-core is injected as a script, which the page's CSP would refuse.
    page = new_page(viewport=DESKTOP, bypass_csp=True)
    open_page(page, tiny_server)
    assert serious_violations(page) == []
    turn = ask(page, "北海道の道庁所在地はどこですか？", 1)
    page.fill("#question", "")
    page.press("#question", "Enter")  # the empty-question message
    turn.locator("a.citation").first.click()
    page.click("#settings-toggle")
    assert serious_violations(page) == []
    page.click("#lang")
    assert serious_violations(page) == []
    page.set_viewport_size(PHONE)
    assert serious_violations(page) == []


def test_page_is_served_with_a_strict_content_security_policy(tiny_server: str) -> None:
    response = requests.get(f"{tiny_server}/ui/", timeout=10)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert requests.get(f"{tiny_server}/ui/../../etc/passwd", timeout=10).status_code == 404


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
        open_page(page, url)
        turn = ask(page, "京都府の府庁所在地は？", 1)
        assert "京都市" in turn.locator(".answer-body").inner_text()
        assert len(prompts) == 1 and "API キー" in prompts[0]
        ask(page, "沖縄県の県庁所在地は？", 2)
        assert len(prompts) == 1, "the key is kept for the tab"
    finally:
        server.close()
