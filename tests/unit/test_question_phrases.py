from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deployments.lexical.ngrams import codepoints, hashed_ngrams
from deployments.lexical.question_phrases import QuestionPhrases


def test_phrases_are_matched_by_hash_and_text_after_normalisation() -> None:
    phrases = QuestionPhrases(["何", "ですか", "？"])  # full-width ？ normalises to ?
    assert phrases.phrases == ("?", "ですか", "何")
    hashes = hashed_ngrams(codepoints("何年ですか"), 3)  # 何年で 年です ですか
    np.testing.assert_array_equal(phrases.contains(3, hashes), [False, False, True])
    assert not phrases.contains(2, hashed_ngrams(codepoints("何年"), 2)).any()
    assert "?" in phrases and "何" in phrases and "年" not in phrases


def test_fingerprint_depends_on_the_phrases_only() -> None:
    assert (
        QuestionPhrases(["何", "誰"]).fingerprint() == QuestionPhrases(["誰", "何"]).fingerprint()
    )
    assert QuestionPhrases(["何"]).fingerprint() != QuestionPhrases(["誰"]).fingerprint()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "phrases.json"
    QuestionPhrases(["何", "どこ"]).save(path)
    assert QuestionPhrases.load(path).phrases == ("どこ", "何")


def test_load_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"serve\.training\.reranker"):
        QuestionPhrases.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"question_phrases": [1, 2]}), encoding="utf-8")
    with pytest.raises(ValueError, match="expected"):
        QuestionPhrases.load(bad)


def test_packaged_phrases_hold_the_usual_question_words() -> None:
    phrases = QuestionPhrases.load()
    assert {"何", "誰", "ですか", "どこ", "いつ"} <= set(phrases.phrases)
    assert "東京" not in phrases
