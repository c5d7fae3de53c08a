"""Typed configuration of the generator stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from deployments.config import StrictConfig

NO_ANSWER_JA = "ご質問に関連する情報は、参照した資料の中に見つかりませんでした。"
DEFAULT_SENTENCE_WEIGHTS = Path(__file__).with_name("sentence_weights.json")
"""Sentence scorer trained on JaQuAD by ``python -m serve.generator_training``."""


class ExtractiveGeneratorConfig(StrictConfig):
    """Built-in generator: answers with the passage sentence (or two) most likely to hold
    the answer, chosen by a linear model learned on JaQuAD, each followed by its citation
    marker, streamed piece by piece. No model download, no GPU."""

    backend: Literal["extractive"] = Field("extractive", description="Selects this engine.")
    max_sentences: int = Field(2, ge=1, le=10, description="Most sentences in an answer.")
    second_sentence_ratio: float = Field(
        0.1,
        ge=0,
        le=1,
        description="A sentence after the best one is added only while the model finds it at "
        "least this many times as likely as the best to hold the answer (0: always add up to "
        "max_sentences; 1: only exact ties). Lower gives longer answers that more often "
        "contain the answer.",
    )
    min_score: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Least share of the question's bigrams (question phrases such as 何年 or "
        "ですか left out) the best sentence must contain; below it the answer says nothing "
        "relevant was found.",
    )
    weights_path: str | None = Field(
        None,
        description="JSON weights of the sentence scorer written by "
        "`python -m serve.generator_training`; default: those shipped with the package.",
    )
    no_answer_message: str = Field(NO_ANSWER_JA, description="Said when nothing relevant is found.")
    piece_chars: int = Field(4, ge=1, description="Characters per streamed piece (one 'token').")
    piece_delay_s: float = Field(
        0.0, ge=0, description="Pause between pieces, to imitate an LLM's pace in tests and demos."
    )

    @property
    def weights_file(self) -> Path:
        return (
            Path(self.weights_path).expanduser() if self.weights_path else DEFAULT_SENTENCE_WEIGHTS
        )


GeneratorConfig = ExtractiveGeneratorConfig
