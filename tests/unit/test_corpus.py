from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve.indexing.corpus import CorpusError, read_documents, read_questions, split_documents
from tests.support import write_jsonl

SQUAD = {
    "data": [
        {
            "title": "梅雨",
            "paragraphs": [
                {
                    "context": "梅雨 [SEP] 梅雨は東アジアの雨季である。",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "梅雨とは何か。",
                            "answers": [
                                {"text": "雨季", "answer_start": 9},
                                {"text": "雨季", "answer_start": 9},
                            ],
                        },
                        {
                            "id": "q2",
                            "question": "答えのない質問",
                            "answers": [],
                            "is_impossible": True,
                        },
                    ],
                },
                {
                    "context": "二つ目の段落。",
                    "qas": [
                        {
                            "id": "q3",
                            "question": "何か",
                            "answers": [{"text": "段落", "answer_start": 3}],
                        }
                    ],
                },
            ],
        }
    ]
}


def test_jsonl_documents_with_and_without_ids(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": "a", "title": " 題 ", "text": " 本文。 ", "url": "https://example.org/a"},
            {"text": "題のない本文。"},
        ],
    )
    documents = list(read_documents(path))
    assert [(d.id, d.title, d.text, d.url) for d in documents] == [
        ("a", "題", "本文。", "https://example.org/a"),
        ("docs:2", "", "題のない本文。", None),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "docs.jsonl:2: not valid JSON"),
        ('["a list"]', "docs.jsonl:2: expected a JSON object"),
        ('{"title": "t"}', "docs.jsonl:2: 'text' must be a non-empty string"),
        ('{"text": "   "}', "docs.jsonl:2: 'text' must be a non-empty string"),
        ('{"text": "x", "title": 3}', "docs.jsonl:2: 'title' must be a string"),
        ('{"id": "a", "text": "x"}', "docs.jsonl:2: duplicate id 'a'"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "最初。"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        list(read_documents(path))


def test_squad_documents_strip_title_separator_and_keep_questions(tmp_path: Path) -> None:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD, ensure_ascii=False), encoding="utf-8")
    documents = list(read_documents(path))
    assert [(d.id, d.title, d.text) for d in documents] == [
        ("squad:0:0", "梅雨", "梅雨は東アジアの雨季である。"),
        ("squad:0:1", "梅雨", "二つ目の段落。"),
    ]
    questions = list(read_questions(path))
    assert [(q.id, q.answers, q.doc_id) for q in questions] == [
        ("q1", ("雨季",), "squad:0:0"),
        ("q3", ("段落",), "squad:0:1"),
    ]


def test_unknown_suffix_and_broken_squad_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"expected a \.jsonl passage file"):
        list(read_documents(tmp_path / "docs.csv"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"no": "data"}', encoding="utf-8")
    with pytest.raises(CorpusError, match="not a SQuAD-format file"):
        list(read_documents(broken))


def test_split_documents_numbers_chunks_of_long_documents(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": "short", "text": "短い。"},
            {"id": "long", "title": "長", "text": "長い文です。" * 20},
        ],
    )
    passages = list(split_documents(read_documents(path), max_chars=30, overlap_chars=6))
    assert passages[0].id == "short" and passages[0].doc_id == "short"
    long_ids = [p.id for p in passages[1:]]
    assert long_ids == [f"long#{i}" for i in range(len(long_ids))] and len(long_ids) > 3
    assert all(p.doc_id == "long" and p.title == "長" and len(p.text) <= 30 for p in passages[1:])
