"""Typed configuration of the generator stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deployments.config import StrictConfig

NO_ANSWER_JA = "ご質問に関連する情報は、参照した資料の中に見つかりませんでした。"


class ExtractiveGeneratorConfig(StrictConfig):
    """Built-in generator: answers with the passage sentences that best match the question,
    each followed by its citation marker, streamed piece by piece. No model, no GPU."""

    backend: Literal["extractive"] = Field("extractive", description="Selects this engine.")
    max_sentences: int = Field(2, ge=1, le=10, description="Most sentences in an answer.")
    min_score: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Least share of the question's weighted n-grams a sentence must contain; "
        "below it the answer says nothing relevant was found.",
    )
    no_answer_message: str = Field(NO_ANSWER_JA, description="Said when nothing relevant is found.")
    piece_chars: int = Field(4, ge=1, description="Characters per streamed piece (one 'token').")
    piece_delay_s: float = Field(
        0.0, ge=0, description="Pause between pieces, to imitate an LLM's pace in tests and demos."
    )


GeneratorConfig = ExtractiveGeneratorConfig
