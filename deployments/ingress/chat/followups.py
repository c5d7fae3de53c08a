"""The retrieval query of a chat turn, made standalone from the conversation.

A follow-up such as 「そこの県庁所在地は？」 names no subject: searched alone, it finds
any prefecture's capital. ``ingress.follow_ups`` chooses how the last user turn
becomes a query that can be searched alone:

- ``rule`` (the default; no model needed): the turn is searched as it is. When it
  names none of the subjects of the passages it finds (it refers back, or leaves its
  subject out), the conversation's subject is put in front of it, the search made
  again, and the passages about that subject ranked first. The conversation's
  subject is that of the previous user turn, resolved the same way: the subject it
  named among its passages, else the subject of its first passage (「日本で一番面積が
  大きい都道府県は？」 -> 北海道). A subject so carries over several follow-ups, and a
  turn that names a new subject changes it. A passage's subject is the head of its
  title, up to its first 「の」 (「北海道の概要」 -> 「北海道」); a turn names it when it
  contains it whole, or without its last character when two or more remain
  (「東京都」 in 「東京の名物は？」).
- ``generator``: the generator rewrites the last turn into a standalone question from
  the conversation (``follow_up_prompt``; one generation of at most
  ``follow_up_max_tokens`` before retrieval). An empty rewrite, or a generator that
  cannot take it, leaves the turn as it is.
- ``off``: the last user turn alone.

A single-turn request is searched as it is, whatever the setting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from deployments.generator.protocol import ChatTurn, GenerationRequest
from deployments.passage import Hit
from deployments.text import names, title_subject

Search = Callable[[str, str | None], Awaitable[list[Hit]]]
"""Retrieval and reranking of one query, best passage first; with a subject, the
passages about it come first."""


@dataclass(frozen=True)
class Resolved:
    """A turn's query, its passages, and the subject the conversation is on after it."""

    query: str
    hits: list[Hit]
    subject: str | None


def named_subject(text: str, hits: Sequence[Hit]) -> str | None:
    """The subject of the best passage whose subject ``text`` names, if any."""
    for hit in hits:
        subject = title_subject(hit.passage.title)
        if names(text, subject):
            return subject
    return None


async def carry_subject(user_turns: Sequence[str], search: Search, max_turns: int) -> Resolved:
    """The ``rule``: the last turn's query and passages, with the conversation's subject
    carried into a turn that names none of the subjects it finds. ``max_turns`` bounds
    how many earlier turns are looked at."""
    query = user_turns[-1]
    hits = await search(query, None)
    named = named_subject(query, hits)
    if named is not None or len(user_turns) == 1 or max_turns == 0:
        top = title_subject(hits[0].passage.title) if hits else None
        return Resolved(query, hits, named or top)
    earlier = await carry_subject(user_turns[:-1], search, max_turns - 1)
    if earlier.subject is None:
        return Resolved(query, hits, None)
    carried = f"{earlier.subject} {query}"
    return Resolved(carried, await search(carried, earlier.subject), earlier.subject)


def prefer_subject(hits: Sequence[Hit], subject: str) -> list[Hit]:
    """``hits`` with the passages about ``subject`` first, each group in its order."""
    about = [h for h in hits if title_subject(h.passage.title) == subject]
    return about + [h for h in hits if title_subject(h.passage.title) != subject]


def rewrite_request(turns: Sequence[ChatTurn], prompt: str, max_tokens: int) -> GenerationRequest:
    """The generation that rewrites the last user turn: ``prompt`` as the instruction,
    the conversation before it as text, greedy decoding."""
    *history, last = [t for t in turns if t.role in ("user", "assistant")]
    speaker = {"user": "ユーザー", "assistant": "アシスタント"}
    conversation = "\n".join(f"{speaker[t.role]}: {t.content}" for t in history)
    content = f"会話:\n{conversation}\n\n最後の質問: {last.content}\n\n独立した質問:"
    return GenerationRequest(
        messages=[ChatTurn("system", prompt), ChatTurn("user", content)],
        max_tokens=max_tokens,
        temperature=0.0,
    )


def standalone_text(rewritten: str, turn: str) -> str:
    """The rewrite's first non-empty line, unquoted; the turn itself if there is none."""
    for line in rewritten.splitlines():
        line = line.strip().strip("「」\"'").strip()
        if line:
            return line
    return turn
