from __future__ import annotations

from deployments.lexical.words import content_word_spans


def test_content_words_are_runs_of_kanji_katakana_or_latin() -> None:
    text = "東京タワーは高い山です2024年のiphone"
    words = [text[a:b] for a, b in content_word_spans(text)]
    # one-character runs (高, 山, 年) are too short; hiragana runs are never words
    assert words == ["東京", "タワー", "2024", "iphone"]


def test_minimum_length_is_configurable() -> None:
    text = "高い山"
    assert [text[a:b] for a, b in content_word_spans(text, min_length=1)] == ["高", "山"]


def test_repeat_mark_and_long_vowel_stay_in_their_word() -> None:
    text = "人々がコーヒーを"
    assert [text[a:b] for a, b in content_word_spans(text)] == ["人々", "コーヒー"]
