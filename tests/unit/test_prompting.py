"""The RAG prompt shared by the vllm, transformers and openai generators."""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoTokenizer

from deployments.generator.config import (
    RAG_INSTRUCTIONS_JA,
    SYSTEM_PROMPT_JA,
    PromptSettings,
)
from deployments.generator.prompting import (
    ChatPrompt,
    PromptTooLongError,
    build_messages,
    fit_messages,
    render_chat,
)
from deployments.generator.protocol import ChatTurn, GenerationRequest
from deployments.passage import Passage
from tests.conftest import TinyModels

PASSAGES = [
    Passage("kagawa", "kagawa", "香川県", "香川県の県庁所在地は高松市である。"),
    Passage("okinawa", "okinawa", "沖縄県", "沖縄県の県庁所在地は那覇市である。"),
    Passage("kyoto", "kyoto", "京都府", "京都府の府庁所在地は京都市である。"),
]
QUESTION = "香川県の県庁所在地はどこですか？"


def request(*turns: ChatTurn, passages: list[Passage] = PASSAGES) -> GenerationRequest:
    return GenerationRequest(
        messages=list(turns) or [ChatTurn("user", QUESTION)], passages=passages
    )


def test_numbered_passages_come_before_the_question_with_the_instructions() -> None:
    messages = build_messages(request(), PromptSettings())
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT_JA}
    assert messages[-1]["role"] == "user" and len(messages) == 2
    content = messages[-1]["content"]
    assert content.startswith(RAG_INSTRUCTIONS_JA)
    assert "[1] 香川県\n香川県の県庁所在地は高松市である。" in content
    assert "[3] 京都府\n" in content
    positions = [content.index(f"[{n}] ") for n in (1, 2, 3)]
    assert positions == sorted(positions) and content.index("質問: ") > positions[-1]
    assert content.endswith(f"質問: {QUESTION}")
    assert "[1] のように" in content, "the model is told to cite passages as [n]"


def test_history_and_client_system_turns_are_kept() -> None:
    turns = [
        ChatTurn("system", "敬語で答えてください。"),
        ChatTurn("user", "こんにちは"),
        ChatTurn("assistant", "こんにちは。"),
        ChatTurn("user", QUESTION),
    ]
    messages = build_messages(request(*turns), PromptSettings())
    assert messages[0]["content"] == f"{SYSTEM_PROMPT_JA}\n\n敬語で答えてください。"
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    trimmed = build_messages(request(*turns), PromptSettings(max_history_turns=1))
    assert [m["role"] for m in trimmed] == ["system", "assistant", "user"]
    none = build_messages(request(*turns), PromptSettings(max_history_turns=0))
    assert [m["role"] for m in none] == ["system", "user"]


def test_without_passages_the_question_goes_as_it_is() -> None:
    messages = build_messages(request(passages=[]), PromptSettings())
    assert messages[-1] == {"role": "user", "content": QUESTION}


def test_long_passages_are_cut() -> None:
    long = Passage("x", "x", "長文", "あ" * 500)
    content = build_messages(request(passages=[long]), PromptSettings(max_passage_chars=50))[-1]
    assert "あ" * 50 + "…" in content["content"] and "あ" * 51 not in content["content"]


def test_templates_are_validated() -> None:
    with pytest.raises(ValueError, match="passage_template"):
        PromptSettings(passage_template="{title}")
    with pytest.raises(ValueError, match="question_template"):
        PromptSettings(question_template="質問")


def test_fitting_drops_passages_from_the_end_keeping_their_numbers() -> None:
    def chars(messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"]) for m in messages)

    settings = PromptSettings()
    full = chars(build_messages(request(), settings))
    messages, kept, size = fit_messages(request(), settings, chars, full - 1)
    assert kept == 2 and size <= full - 1
    assert "[2] 沖縄県" in messages[-1]["content"] and "京都府" not in messages[-1]["content"]
    with pytest.raises(PromptTooLongError, match="prompt tokens"):
        fit_messages(request(), settings, chars, 10)


class NoSystemRole:
    """A chat template that rejects system messages (as Gemma's does)."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        if any(m["role"] == "system" for m in conversation):
            raise ValueError("System role not supported")
        return "|".join(f"{m['role']}:{m['content']}" for m in conversation)


def test_templates_without_a_system_role_get_it_in_the_first_user_turn() -> None:
    text = render_chat(NoSystemRole(), build_messages(request(passages=[]), PromptSettings()))
    assert text == f"user:{SYSTEM_PROMPT_JA}\n\n{QUESTION}"


def test_the_models_own_chat_template_renders_the_prompt(tiny_models: TinyModels) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models.chat_model))
    prompt = ChatPrompt(tokenizer, PromptSettings())
    ids, kept, max_tokens = prompt.encode(request(), max_tokens=64, max_model_len=2048)
    text = tokenizer.decode(ids)
    assert isinstance(text, str), "one sequence of ids decodes to one string"
    assert kept == 3 and max_tokens == 64
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert text.count("<|begin_of_text|>") == 1, "the template writes BOS; encoding adds none"
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "[1] 香川県" in text and f"質問: {QUESTION}" in text


def test_a_small_context_keeps_fewer_passages_and_a_shorter_answer(
    tiny_models: TinyModels,
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models.chat_model))
    prompt = ChatPrompt(tokenizer, PromptSettings())
    full, _, _ = prompt.encode(request(), max_tokens=16, max_model_len=4096)
    one_passage_less = len(full) - 10
    ids, kept, max_tokens = prompt.encode(request(), 16, one_passage_less + 16)
    assert kept < 3 and len(ids) + max_tokens <= one_passage_less + 16
