from __future__ import annotations

import itertools

import pytest

from deployments.text import chunk_text, normalize, split_sentences


def test_normalize_folds_width_case_and_spaces() -> None:
    assert normalize("ＡＢＣ　ｄｅｆ\n１２３ ｶﾀｶﾅ") == "abc def 123 カタカナ"


def test_split_sentences_at_japanese_terminators() -> None:
    text = "東京は首都である。大阪は西にある！京都はどうか？"
    assert split_sentences(text) == ["東京は首都である。", "大阪は西にある！", "京都はどうか？"]


def test_split_sentences_keeps_quotes_whole() -> None:
    text = "彼は「今日は晴れ。明日は雨。」と言った。次の文。"
    assert split_sentences(text) == ["彼は「今日は晴れ。明日は雨。」と言った。", "次の文。"]


def test_split_sentences_keeps_repeated_terminators_and_stray_closers() -> None:
    assert split_sentences("本当か？！次。") == ["本当か？！", "次。"]
    assert split_sentences("終わり。」次。") == ["終わり。」", "次。"]


def test_split_sentences_on_line_breaks_and_unterminated_tail() -> None:
    assert split_sentences("見出し\n本文です。末尾") == ["見出し", "本文です。", "末尾"]


def test_chunk_text_short_text_is_one_chunk() -> None:
    assert chunk_text("短い文。", 100, 10) == ["短い文。"]
    assert chunk_text("   ", 100, 10) == []


def test_chunk_text_respects_limit_and_overlaps_whole_sentences() -> None:
    sentences = [f"これは{i}番目の文です。" for i in range(10)]  # 11 or 12 characters each
    chunks = chunk_text("".join(sentences), 40, 15)
    assert all(len(c) <= 40 for c in chunks)
    assert "".join(sentences).startswith(chunks[0])
    for previous, current in itertools.pairwise(chunks):
        first_sentence = split_sentences(current)[0]
        assert previous.endswith(first_sentence), "consecutive chunks share a sentence"
    assert chunks[-1].endswith(sentences[-1])
    covered = set()
    for chunk in chunks:
        covered.update(split_sentences(chunk))
    assert covered == set(sentences)


def test_chunk_text_cuts_a_sentence_longer_than_the_limit() -> None:
    chunks = chunk_text("あ" * 25 + "。", 10, 0)
    assert [len(c) for c in chunks] == [10, 10, 6]


def test_chunk_text_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        chunk_text("文。", 0, 0)
    with pytest.raises(ValueError):
        chunk_text("文。", 10, 10)
