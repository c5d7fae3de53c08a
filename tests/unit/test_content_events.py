"""A stream's content events, written from a per-stream template: byte for byte the
chunk the pydantic model writes, whatever the text, model name or id holds."""

from __future__ import annotations

import json

import pytest

from deployments.ingress.chat.protocol import (
    ChatCompletionChunk,
    ChunkChoice,
    ContentEvents,
    Delta,
)

TEXTS = [
    "香川県の県庁所在地は高松市です。[1]",
    'quotes " and \\ backslashes',
    "line\nbreaks\tand \x00 controls",
    "",
    "絵文字 🍣 and surrogates \ud83c",
    '"content": "x"',
]


@pytest.mark.parametrize("model", ["jarag-rag", 'a "quoted" model', '{"content": "m"}'])
def test_every_content_event_is_the_chunk_the_model_writes(model: str) -> None:
    events = ContentEvents("chatcmpl-1", 1_700_000_000, model)
    for text in TEXTS:
        expected = ChatCompletionChunk(
            id="chatcmpl-1",
            created=1_700_000_000,
            model=model,
            choices=[ChunkChoice(delta=Delta(content=text))],
        ).sse()
        assert events.event(text) == expected
        body = json.loads(events.event(text).removeprefix("data: "))
        assert body["choices"][0]["delta"] == {"content": text}
        assert body["model"] == model
