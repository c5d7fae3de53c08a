"""What every generator engine provides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from deployments.passage import Passage

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A conversation plus the numbered passages ([1], [2], ...) to answer from."""

    messages: Sequence[ChatTurn]
    passages: Sequence[Passage] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] = field(default_factory=tuple)
    seed: int | None = None

    @property
    def question(self) -> str:
        """The last user turn."""
        for turn in reversed(self.messages):
            if turn.role == "user":
                return turn.content
        return ""


@dataclass(frozen=True, slots=True)
class GeneratedText:
    """One streamed piece; the last piece of an answer carries ``finish_reason``."""

    text: str
    tokens: int = 1
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    """Size of the prompt, reported with the last piece by engines that know it."""


class GeneratorEngine(Protocol):
    @property
    def model_name(self) -> str: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]: ...


@runtime_checkable
class ManagedEngine(Protocol):
    """An engine holding outside resources (a GPU engine, an HTTP client): it can report
    its health cheaply and be shut down with its replica."""

    async def check_health(self) -> None: ...

    def close(self) -> None: ...
