"""What crosses between deployments (passages, hits, generation requests and pieces)
pickles as constructor arguments (faster than a slotted dataclass's default), whole."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from ray import cloudpickle

from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.passage import Hit, Passage

PASSAGE = Passage(
    "doc#1",
    "doc",
    "北海道",
    "道庁所在地は札幌市である。",
    "https://example.org",
    {"source": "hokkaido.jsonl", "pageid": 12, "score": 0.5, "stub": False, "date": None},
)
HIT = Hit(PASSAGE, 0.5, 3.25, 0.75)
REQUEST = GenerationRequest(
    messages=[ChatTurn("system", "丁寧に"), ChatTurn("user", "道庁所在地は？")],
    passages=[PASSAGE],
    max_tokens=64,
    temperature=0.3,
    top_p=0.8,
    stop=("\n",),
    seed=7,
)
PIECE = GeneratedText("札幌", tokens=2, finish_reason="stop", prompt_tokens=120)


@pytest.mark.parametrize("value", [PASSAGE, HIT, REQUEST, PIECE, ChatTurn("user", "質問")])
def test_every_field_survives_the_trip(value: Any) -> None:
    assert pickle.loads(cloudpickle.dumps(value)) == value
    arguments = value.__reduce__()[1]
    assert len(arguments) == len(dataclasses.fields(value)), "a field is missing in __reduce__"
