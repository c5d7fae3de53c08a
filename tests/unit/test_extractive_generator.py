from __future__ import annotations

import asyncio
import re

import pytest

from deployments.generator.config import ExtractiveGeneratorConfig
from deployments.generator.extractive import ExtractiveGenerator
from deployments.generator.factory import create_generator
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.passage import Passage

SHOGI = Passage(
    "d3",
    "d3",
    "将棋",
    "将棋は二人で行うボードゲームである。駒を動かして相手の玉将を詰ませると勝ちになる。",
)
TOWER = Passage(
    "d2",
    "d2",
    "東京タワー",
    "東京タワーは東京都港区にある電波塔である。1958年に完成した。高さは333メートルである。",
)
CHERRY = Passage("d4", "d4", "桜", "桜はバラ科の落葉樹である。日本では春に花見が行われる。")
MARKER = re.compile(r"\[(\d+)\]")


def ask(question: str, *passages: Passage, max_tokens: int | None = None) -> GenerationRequest:
    return GenerationRequest([ChatTurn("user", question)], passages, max_tokens=max_tokens)


@pytest.fixture(scope="module")
def generator() -> ExtractiveGenerator:
    return ExtractiveGenerator(ExtractiveGeneratorConfig())


def collect(generator: ExtractiveGenerator, request: GenerationRequest) -> list[GeneratedText]:
    async def run() -> list[GeneratedText]:
        return [piece async for piece in generator.generate(request)]

    return asyncio.run(run())


def test_answers_with_the_sentence_holding_the_answer_and_cites_its_passage(
    generator: ExtractiveGenerator,
) -> None:
    answer = generator.answer(ask("東京タワーの高さは何メートルですか", SHOGI, TOWER))
    assert "高さは333メートルである。[2]" in answer
    assert MARKER.findall(answer) and set(MARKER.findall(answer)) == {"2"}
    # every sentence is followed by its marker
    assert answer.endswith("]")
    assert all(part.endswith("。") for part in MARKER.split(answer)[0::2] if part)


def test_never_more_than_max_sentences(generator: ExtractiveGenerator) -> None:
    request = ask("東京タワーはいつ完成し、高さは何メートルか", TOWER, SHOGI, CHERRY)
    assert 1 <= len(MARKER.findall(generator.answer(request))) <= 2
    every = ExtractiveGenerator(ExtractiveGeneratorConfig(max_sentences=2, second_sentence_ratio=0))
    answer = every.answer(request)
    assert len(MARKER.findall(answer)) == 2
    one = ExtractiveGenerator(ExtractiveGeneratorConfig(max_sentences=1, second_sentence_ratio=0))
    assert len(MARKER.findall(one.answer(request))) == 1


def test_chosen_sentences_come_in_passage_order(generator: ExtractiveGenerator) -> None:
    every = ExtractiveGenerator(ExtractiveGeneratorConfig(max_sentences=3, second_sentence_ratio=0))
    chosen = every.choose("東京タワーはいつ完成し、高さは何メートルか", [SHOGI.text, TOWER.text])
    keys = [(c.passage_number, c.position) for c in chosen]
    assert keys == sorted(keys) and len(keys) == 3


def test_says_so_when_nothing_relevant_is_found(generator: ExtractiveGenerator) -> None:
    unrelated = ask("量子コンピュータの誤り訂正符号はどのような仕組みですか", TOWER, CHERRY)
    assert generator.answer(unrelated) == generator.config.no_answer_message
    assert generator.answer(ask("東京タワーの高さは？")) == generator.config.no_answer_message
    assert generator.answer(ask("", TOWER)) == generator.config.no_answer_message


def test_streams_the_answer_and_stops_at_max_tokens(generator: ExtractiveGenerator) -> None:
    request = ask("東京タワーの高さは何メートルですか", TOWER)
    pieces = collect(generator, request)
    assert "".join(p.text for p in pieces) == generator.answer(request)
    assert all(len(p.text) <= generator.config.piece_chars for p in pieces)
    assert [p.finish_reason for p in pieces] == [None] * (len(pieces) - 1) + ["stop"]
    cut = collect(generator, ask("東京タワーの高さは何メートルですか", TOWER, max_tokens=2))
    assert len(cut) == 2 and cut[-1].finish_reason == "length" and cut[0].finish_reason is None


def test_factory_builds_the_extractive_engine() -> None:
    assert isinstance(create_generator(ExtractiveGeneratorConfig()), ExtractiveGenerator)


def test_a_sentence_that_leaves_its_subject_implicit_is_introduced_by_its_title(
    generator: ExtractiveGenerator,
) -> None:
    overview = Passage(
        "hokkaido-overview",
        "hokkaido-overview",
        "北海道の概要",
        "道庁所在地は札幌市である。面積は都道府県の中で最も広く、国土のおよそ2割を占める。",
    )
    answer = generator.answer(ask("日本で一番面積が大きい都道府県は？", overview))
    assert answer.startswith("「北海道の概要」によると、")
    assert answer.count("によると") == 1  # once per subject
    assert "面積は都道府県の中で最も広く" in answer and answer.endswith("[1]")
    # A sentence that names its subject stands as it is.
    named = generator.answer(ask("東京タワーはどこにある電波塔ですか？", TOWER))
    assert named.startswith("東京タワーは東京都港区にある電波塔である。")
