"""What every generator engine provides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from deployments.passage import Passage

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as constructor arguments (faster than a slotted dataclass's default):
        # requests and pieces cross between deployments on every call.
        return (ChatTurn, (self.role, self.content))


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

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            GenerationRequest,
            (
                self.messages,
                self.passages,
                self.max_tokens,
                self.temperature,
                self.top_p,
                self.stop,
                self.seed,
            ),
        )

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

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            GeneratedText,
            (self.text, self.tokens, self.finish_reason, self.prompt_tokens),
        )


class GeneratorEngine(Protocol):
    @property
    def model_name(self) -> str: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GeneratedText]: ...


@runtime_checkable
class CountingEngine(Protocol):
    """An engine that reports counts of its own (vLLM: the requests it has not
    finished), shown in the Generator's ``describe()``."""

    def stats(self) -> dict[str, int]: ...


@runtime_checkable
class ManagedEngine(Protocol):
    """An engine holding outside resources (a GPU engine, an HTTP client): it can report
    its health cheaply and be shut down with its replica."""

    async def check_health(self) -> None: ...

    def close(self) -> None: ...
