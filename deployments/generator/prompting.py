"""The RAG prompt shared by the LLM backends (vllm, transformers, openai).

The messages are: a Japanese system prompt (plus any system turns of the client),
the recent conversation, then the last user turn rewritten to carry the numbered
passages (title and text) before the question, with the instruction to answer
only from them and cite them as [n]. The numbers are the ones the API returns in
``sources``. Nothing here imports Ray or a model library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from deployments.errors import RequestRejected
from deployments.generator.config import PromptSettings
from deployments.generator.protocol import GenerationRequest
from deployments.passage import Passage

Message = dict[str, str]
"""One chat message as chat templates and OpenAI clients take it: role and content."""


class PromptTooLongError(RequestRejected):
    """The conversation alone does not fit the model's context window."""


def format_passages(passages: Sequence[Passage], settings: PromptSettings) -> str:
    """The passages numbered from 1, in the order the API reports them as sources."""
    blocks = []
    for number, passage in enumerate(passages, start=1):
        text = passage.text
        if len(text) > settings.max_passage_chars:
            text = text[: settings.max_passage_chars] + "…"
        blocks.append(
            settings.passage_template.format(
                number=number, title=passage.title, text=text, url=passage.url or ""
            ).strip()
        )
    return "\n\n".join(blocks)


def build_messages(
    request: GenerationRequest,
    settings: PromptSettings,
    passages: Sequence[Passage] | None = None,
) -> list[Message]:
    """Chat messages for ``request``; ``passages`` overrides ``request.passages`` (to fit
    the context, callers drop passages from the end, so the numbers stay the same)."""
    passages = request.passages if passages is None else passages
    system = "\n\n".join(
        [settings.system_prompt, *(t.content for t in request.messages if t.role == "system")]
    ).strip()
    turns = [t for t in request.messages if t.role != "system"]
    last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
    if last_user is None:
        raise ValueError("a generation request needs a user turn")
    history = turns[:last_user]
    keep = settings.max_history_turns
    history = history[len(history) - keep :] if keep else []
    question = turns[last_user].content
    if passages:
        content = "\n\n".join(
            [
                settings.rag_instructions,
                format_passages(passages, settings),
                settings.question_template.format(question=question),
            ]
        )
    else:
        content = question
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    messages += [{"role": t.role, "content": t.content} for t in history]
    messages.append({"role": "user", "content": content})
    return messages


def fit_messages(
    request: GenerationRequest,
    settings: PromptSettings,
    count_tokens: Callable[[list[Message]], int],
    budget: int,
) -> tuple[list[Message], int, int]:
    """The messages with as many leading passages as fit in ``budget`` prompt tokens.

    Returns the messages, how many passages they carry and their token count.
    Raises :class:`PromptTooLongError` when even no passage is too long.
    """
    passages = list(request.passages)
    while True:
        messages = build_messages(request, settings, passages)
        tokens = count_tokens(messages)
        if tokens <= budget:
            return messages, len(passages), tokens
        if not passages:
            raise PromptTooLongError(
                f"the conversation needs {tokens} prompt tokens; at most {budget} fit the "
                "model's context with the requested answer length"
            )
        # Halve the overshoot quickly, then drop one by one.
        passages = passages[: max(0, min(len(passages) - 1, len(passages) * budget // tokens))]


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the prompt needs."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def render_chat(tokenizer: ChatTokenizer, messages: list[Message]) -> str:
    """The prompt text of ``messages`` in the model's own chat template, ready for the
    assistant's turn. Templates that refuse a system role get it folded into the
    first user message."""
    try:
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    except Exception as error:
        if not messages or messages[0]["role"] != "system" or len(messages) < 2:
            raise _no_template(error) from error
        system, first, *rest = messages
        merged = {"role": first["role"], "content": f"{system['content']}\n\n{first['content']}"}
        try:
            return str(
                tokenizer.apply_chat_template(
                    [merged, *rest], tokenize=False, add_generation_prompt=True
                )
            )
        except Exception as retry_error:
            raise _no_template(retry_error) from retry_error


def _no_template(error: Exception) -> ValueError:
    return ValueError(f"cannot apply the model's chat template: {error}")


class PromptTokenizer(ChatTokenizer, Protocol):
    """A Hugging Face tokenizer: chat template plus encoding."""

    def __call__(self, text: str, **kwargs: Any) -> Any: ...


class ChatPrompt:
    """Renders requests in a model's chat template and fits them in its context window."""

    def __init__(self, tokenizer: PromptTokenizer, settings: PromptSettings) -> None:
        self.tokenizer = tokenizer
        self.settings = settings

    def token_ids(self, messages: list[Message]) -> list[int]:
        # The template writes the special tokens (BOS, headers) itself.
        text = render_chat(self.tokenizer, messages)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(
        self, request: GenerationRequest, max_tokens: int, max_model_len: int
    ) -> tuple[list[int], int, int]:
        """Prompt token ids with as many passages as leave room for ``max_tokens``, the
        number of passages kept, and the answer length that fits after the prompt."""
        budget = max(max_model_len - max_tokens, max_model_len // 2)
        cache: dict[int, list[int]] = {}

        def count(messages: list[Message]) -> int:
            ids = self.token_ids(messages)
            cache[len(ids)] = ids
            return len(ids)

        _, kept, length = fit_messages(request, self.settings, count, budget)
        return cache[length], kept, min(max_tokens, max_model_len - length)
