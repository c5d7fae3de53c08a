"""Follow-up questions in conversations: does retrieval find what a turn needs when the
turn leans on what came before?

Each conversation (JSON Lines: ``id``, ``style``, ``turns`` of ``question``,
``standalone`` and the gold ``doc_id``) is held with the chat service as a client
would: every turn is asked with the conversation so far, the service's own answers
included. Each later turn is also asked alone in its ``standalone`` form (the same
question with its subject named). Recall@k is the share of those turns whose gold
passage is among the first k sources, asked both ways.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deployments.ingress.app import create_app
from deployments.ingress.chat.protocol import ChatCompletion, ChatCompletionRequest
from deployments.ingress.chat.serving import ChatService
from deployments.ingress.deadline import Deadline
from serve.app import in_process_stages
from serve.config import AppConfig

RECALL_AT = 3


@dataclass(frozen=True)
class Turn:
    question: str
    standalone: str
    doc_id: str


@dataclass(frozen=True)
class Conversation:
    id: str
    style: str
    turns: tuple[Turn, ...]


@dataclass
class FollowUpScores:
    """Ranks of the gold passage of every later turn (None: not among the sources)."""

    in_conversation: list[int | None] = field(default_factory=list)
    standalone: list[int | None] = field(default_factory=list)
    by_style: dict[str, list[tuple[int | None, int | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, style: str, in_conversation: int | None, standalone: int | None) -> None:
        self.in_conversation.append(in_conversation)
        self.standalone.append(standalone)
        self.by_style[style].append((in_conversation, standalone))

    def rows(self, k: int = RECALL_AT) -> dict[str, dict[str, float]]:
        """Recall@k asked in conversation and asked alone, overall and per style."""
        rows = {"all": _row(list(zip(self.in_conversation, self.standalone, strict=True)), k)}
        rows.update({style: _row(pairs, k) for style, pairs in sorted(self.by_style.items())})
        return rows


def _row(pairs: Sequence[tuple[int | None, int | None]], k: int) -> dict[str, float]:
    def recall(ranks: Iterable[int | None]) -> float:
        ranks = list(ranks)
        return sum(r is not None and r <= k for r in ranks) / max(len(ranks), 1)

    follow_up = recall(p[0] for p in pairs)
    alone = recall(p[1] for p in pairs)
    return {
        "turns": len(pairs),
        f"follow-up recall@{k}": follow_up,
        f"standalone recall@{k}": alone,
        "ratio": follow_up / alone if alone else 0.0,
    }


def read_conversations(path: Path) -> list[Conversation]:
    """The conversations of a JSON Lines file; a malformed line fails with its number."""
    conversations = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            turns = tuple(
                Turn(t["question"], t.get("standalone", t["question"]), t["doc_id"])
                for t in record["turns"]
            )
            conversations.append(Conversation(record["id"], record.get("style", ""), turns))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a conversation ({error})") from None
    return conversations


async def evaluate_conversations(
    config: AppConfig,
    conversations: Sequence[Conversation],
    progress: Callable[[int], None] = lambda _: None,
) -> FollowUpScores:
    """Every conversation held with the chat service over ``config``'s stages (the
    same deployment classes as the graph, in this process)."""
    app = create_app(in_process_stages(config), config.ingress, config.retrieval_defaults())
    chat: ChatService = app.state.chat
    scores = FollowUpScores()
    for conversation in conversations:
        messages: list[dict[str, str]] = []
        for number, turn in enumerate(conversation.turns):
            messages.append({"role": "user", "content": turn.question})
            answer = await _ask(chat, messages)
            messages.append({"role": "assistant", "content": answer.choices[0].message.content})
            if number == 0:
                continue
            alone = await _ask(chat, [{"role": "user", "content": turn.standalone}])
            scores.add(conversation.style, _rank(answer, turn.doc_id), _rank(alone, turn.doc_id))
        progress(1)
    return scores


async def _ask(chat: ChatService, messages: list[dict[str, str]]) -> ChatCompletion:
    request = ChatCompletionRequest.model_validate({"messages": messages})
    deadline = Deadline.after(chat.config.request_timeout_s)
    return await chat.complete(await chat.prepare(request, deadline), deadline)


def _rank(answer: ChatCompletion, doc_id: str) -> int | None:
    return next(
        (number for number, s in enumerate(answer.sources, start=1) if s.doc_id == doc_id), None
    )
