"""Follow-up questions: the rule that carries the conversation's subject, the generator's
rewrite, both through the chat API over the demo index, and `jarag eval conversations`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployments.generator.protocol import GeneratedText, GenerationRequest
from deployments.ingress.app import create_app
from deployments.ingress.chat.followups import (
    carry_subject,
    prefer_subject,
    rewrite_request,
    standalone_text,
)
from deployments.ingress.config import IngressConfig
from deployments.passage import Hit, Passage
from deployments.text import names, title_subject
from serve.cli import main
from tests.support import RETRIEVAL, local_stages

AREA = "日本で一番面積が大きい都道府県はどこですか？"
CAPITAL = "そこの県庁所在地は？"


def hit(title: str, score: float = 1.0) -> Hit:
    return Hit(Passage(id=title, doc_id=title, title=title, text=title), score)


def test_a_titles_subject_is_its_head_up_to_the_first_no() -> None:
    assert title_subject("北海道の概要") == "北海道"
    assert title_subject("東京都の地理と気候") == "東京都"
    assert title_subject("富士山") == "富士山"
    assert names("東京の名物は？", "東京都") and names("東京都の名物は？", "東京都")
    assert names("津の名物は？", "津") and not names("そこの名物は？", "東京都")


def test_the_rule_carries_the_subject_into_a_turn_that_names_none() -> None:
    searched: list[tuple[str, str | None]] = []
    found = {AREA: [hit("北海道の概要")], CAPITAL: [hit("愛知県の概要"), hit("福岡県の概要")]}

    async def search(query: str, subject: str | None) -> list[Hit]:
        searched.append((query, subject))
        return found.get(query, [hit("北海道の概要"), hit("北海道の歴史")])

    resolved = asyncio.run(carry_subject([AREA, CAPITAL], search, max_turns=4))
    assert resolved.query == f"北海道 {CAPITAL}" and resolved.subject == "北海道"
    assert searched[-1] == (f"北海道 {CAPITAL}", "北海道")


def test_a_turn_that_names_a_new_subject_is_searched_as_it_is() -> None:
    async def search(query: str, subject: str | None) -> list[Hit]:
        return (
            [hit("沖縄県の概要"), hit("北海道の概要")] if "沖縄" in query else [hit("北海道の概要")]
        )

    turns = ["北海道はどんなところですか？", "沖縄県の県庁所在地は？"]
    resolved = asyncio.run(carry_subject(turns, search, max_turns=4))
    assert resolved.query == turns[-1] and resolved.subject == "沖縄県"


def test_passages_about_the_subject_come_first_in_their_order() -> None:
    hits = [hit("愛知県の概要"), hit("北海道の歴史"), hit("福岡県の概要"), hit("北海道の概要")]
    ordered = [h.passage.title for h in prefer_subject(hits, "北海道")]
    assert ordered == ["北海道の歴史", "北海道の概要", "愛知県の概要", "福岡県の概要"]


def test_the_rewrite_request_holds_the_conversation_and_reads_back_one_line() -> None:
    from deployments.generator.protocol import ChatTurn

    turns = [
        ChatTurn("user", AREA),
        ChatTurn("assistant", "北海道です。[1]"),
        ChatTurn("user", CAPITAL),
    ]
    request = rewrite_request(turns, "書き換えて", 32)
    assert request.max_tokens == 32 and request.temperature == 0.0 and not request.passages
    assert request.messages[0].content == "書き換えて"
    assert AREA in request.messages[1].content and CAPITAL in request.messages[1].content
    assert (
        standalone_text("\n「北海道の県庁所在地は？」\n余計な行", CAPITAL)
        == "北海道の県庁所在地は？"
    )
    assert standalone_text("  \n", CAPITAL) == CAPITAL


def ask(client: TestClient, *turns: str) -> dict[str, object]:
    messages: list[dict[str, str]] = []
    body: dict[str, object] = {}
    for turn in turns:
        messages.append({"role": "user", "content": turn})
        response = client.post("/v1/chat/completions", json={"messages": messages})
        assert response.status_code == 200, response.text
        body = response.json()
        messages.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})  # type: ignore[index]
    return body


@pytest.mark.parametrize("mode", ["rule", "off"])
def test_a_follow_up_finds_the_prefecture_of_the_first_turn(demo_index: Path, mode: str) -> None:
    app = create_app(local_stages(demo_index), IngressConfig(follow_ups=mode), RETRIEVAL)
    with TestClient(app) as client:
        body = ask(client, AREA, CAPITAL)
    titles = [s["title"] for s in body["sources"][:3]]  # type: ignore[index]
    if mode == "rule":
        assert "北海道の概要" in titles
        assert "札幌" in body["choices"][0]["message"]["content"]  # type: ignore[index]
    else:
        assert not any(t.startswith("北海道") for t in titles)


class RewritingGenerator:
    """Answers a rewrite request with a fixed standalone question; anything else with
    the question it was asked."""

    model_name = "rewriter"

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]:
        self.requests.append(request)
        if request.messages[0].role == "system":
            yield GeneratedText("北海道の道庁所在地はどこですか？", tokens=8, finish_reason="stop")
            return
        yield GeneratedText(request.messages[-1].content, tokens=1, finish_reason="stop")


def test_the_generator_rewrites_a_follow_up_before_retrieval(demo_index: Path) -> None:
    generator = RewritingGenerator()
    config = IngressConfig(follow_ups="generator")
    with TestClient(create_app(local_stages(demo_index, generator), config, RETRIEVAL)) as client:
        single = ask(client, AREA)
        assert len(generator.requests) == 1  # a single turn is not rewritten
        body = ask(client, AREA, CAPITAL)
    assert single["sources"]
    rewrites = [r for r in generator.requests if r.messages[0].role == "system"]
    assert len(rewrites) == 1 and CAPITAL in rewrites[0].messages[1].content
    assert body["sources"][0]["title"] == "北海道の概要"  # type: ignore[index]


def test_eval_conversations_reports_recall_in_conversation_and_alone(
    demo_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conversations = tmp_path / "conversations.jsonl"
    lines = [
        {
            "id": "pronoun-1",
            "style": "pronoun",
            "turns": [
                {"question": AREA, "doc_id": "hokkaido-overview"},
                {
                    "question": CAPITAL,
                    "standalone": "北海道の道庁所在地はどこですか？",
                    "doc_id": "hokkaido-overview",
                },
            ],
        }
    ]
    conversations.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    out = tmp_path / "figures.json"
    args = ["eval", "conversations", str(conversations), "--quiet", "--json", str(out)]
    assert main([*args, "--index-dir", str(demo_index), "--reuse-index"]) == 0
    figures = json.loads(out.read_text())["results"]
    assert figures["all"]["turns"] == 1
    assert figures["all"]["follow-up recall@3"] == 1.0
    assert figures["all"]["standalone recall@3"] == 1.0
    assert "| pronoun | 1.000 |" in capsys.readouterr().out


def test_a_malformed_conversation_is_reported_with_its_line(tmp_path: Path) -> None:
    from serve.evaluation.conversations import read_conversations

    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "turns": [{"question": "x", "doc_id": "d"}]}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_conversations(path)


def test_the_demo_conversations_cover_every_style(tmp_path: Path) -> None:
    from serve.demo import DEMO_CONVERSATIONS
    from serve.evaluation.conversations import read_conversations

    conversations = read_conversations(DEMO_CONVERSATIONS)
    styles: Sequence[str] = sorted({c.style for c in conversations})
    assert len(conversations) >= 100
    assert styles == ["ellipsis", "ellipsis-chain", "pronoun", "shift"]
    assert all(len(c.turns) >= 2 for c in conversations)
