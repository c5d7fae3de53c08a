"""Corpus readers on small files of each format: JSON Lines plain and compressed (the
wikipedia-utils passages layout among them), Parquet shards, Markdown and text folders."""

from __future__ import annotations

import bz2
import datetime
import gzip
import json
import logging
import lzma
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from deployments.extras import MissingDependencyError
from serve.indexing import corpus
from serve.indexing.corpus import (
    CorpusError,
    CorpusProblems,
    metadata_value,
    read_documents,
    split_documents,
    wikipedia_url,
)

# The layout of singletongue/wikipedia-utils passages-c400-jawiki-20230403.
WIKI_PASSAGES: list[dict[str, Any]] = [
    {
        "id": 1,
        "pageid": 5,
        "revid": 94384329,
        "title": "アンパサンド",
        "section": "__LEAD__",
        "text": "アンパサンド（&、英語: ampersand）は、並立助詞「…と…」を意味する記号である。",
    },
    {
        "id": 2,
        "pageid": 5,
        "revid": 94384329,
        "title": "アンパサンド",
        "section": "歴史",
        "text": "その使用は1世紀に遡ることができる。5世紀中葉から末期にかけて使われた。",
    },
    {
        "id": 3,
        "pageid": 10,
        "revid": 93970128,
        "title": "言語 (哲学)",
        "section": "__LEAD__",
        "text": "言語は哲学の主要な主題の一つである。",
    },
]
MALFORMED_LINE = b'{"id": 99, "pageid": 7, "title": "\xe5\xa3\x8a", "text": '


def jsonl_bytes(records: list[dict[str, Any]], malformed_after: int | None = None) -> bytes:
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records]
    if malformed_after is not None:
        lines.insert(malformed_after, MALFORMED_LINE)
    return b"\n".join(lines) + b"\n"


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "jsonl": lambda data: data,
    "jsonl.gz": gzip.compress,
    "jsonl.bz2": bz2.compress,
    "jsonl.xz": lzma.compress,
    "jsonl.zst": lambda data: zstandard.ZstdCompressor().compress(data),
    "json.gz": gzip.compress,  # wikipedia-utils names its JSON Lines files .json.gz
}


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_wikipedia_utils_passages_in_every_compression(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"passages-c400-jawiki-20230403.{suffix}"
    path.write_bytes(COMPRESSORS[suffix](jsonl_bytes(WIKI_PASSAGES)))
    documents = list(read_documents(path))
    assert [d.id for d in documents] == ["1", "2", "3"]
    first = documents[0]
    assert first.title == "アンパサンド" and first.text.startswith("アンパサンド（&")
    assert first.metadata == {
        "source": path.name,
        "pageid": 5,
        "revid": 94384329,
        "section": "__LEAD__",
    }
    assert (
        first.url
        == "https://ja.wikipedia.org/wiki/%E3%82%A2%E3%83%B3%E3%83%91%E3%82%B5%E3%83%B3%E3%83%89"
    )
    assert documents[2].url == wikipedia_url("言語 (哲学)")
    assert documents[2].url.endswith("/%E8%A8%80%E8%AA%9E_%28%E5%93%B2%E5%AD%A6%29")


def test_malformed_line_is_skipped_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "wiki.jsonl.bz2"
    path.write_bytes(bz2.compress(jsonl_bytes(WIKI_PASSAGES, malformed_after=1)))
    problems = CorpusProblems()
    with caplog.at_level(logging.WARNING, logger=corpus.__name__):
        documents = list(read_documents(path, problems))
    assert [d.id for d in documents] == ["1", "2", "3"]
    assert problems.count == 1
    assert problems.examples == [f"{path}:2: not valid JSON (Expecting value)"]
    assert [r.getMessage() for r in caplog.records] == [
        f"skipped {path}:2: not valid JSON (Expecting value)"
    ]


def test_malformed_line_fails_a_strict_read_after_the_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "wiki.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(WIKI_PASSAGES, 1)))
    documents = read_documents(path)
    assert next(documents).id == "1", "documents arrive one by one, before the bad line is read"
    with pytest.raises(CorpusError, match=r"wiki\.jsonl\.zst:2: not valid JSON"):
        next(documents)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": 1, "text": "dup"}', "duplicate id '1'"),
        (b'{"text": null}', "'text' must be a non-empty string"),
    ],
)
def test_each_kind_of_bad_line_is_named(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(jsonl_bytes(WIKI_PASSAGES[:1]) + line + b"\n")
    problems = CorpusProblems()
    assert [d.id for d in read_documents(path, problems)] == ["1"]
    assert problems.count == 1 and problems.examples[0].startswith(f"{path}:2: {message}")


def test_problems_past_the_first_few_are_counted_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("{}\n" * (corpus.LOGGED_PROBLEMS + 5) + '{"text": "本文。"}\n', "utf-8")
    problems = CorpusProblems()
    with caplog.at_level(logging.WARNING, logger=corpus.__name__):
        assert len(list(read_documents(path, problems))) == 1
    assert problems.count == corpus.LOGGED_PROBLEMS + 5
    assert len(problems.examples) == corpus.LOGGED_PROBLEMS
    assert len(caplog.records) == corpus.LOGGED_PROBLEMS + 1  # and one "more ..." notice


def test_a_damaged_compressed_file_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "wiki.jsonl.gz"
    data = gzip.compress(jsonl_bytes(WIKI_PASSAGES * 200))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError, match=r"wiki\.jsonl\.gz: cannot be read after line \d+"):
        list(read_documents(path, CorpusProblems()))


def test_a_passage_that_fits_stays_whole_and_chunks_share_metadata(tmp_path: Path) -> None:
    long_text = "長い段落の文です。" * 40
    records = [*WIKI_PASSAGES[:1], {**WIKI_PASSAGES[1], "text": long_text}]
    path = tmp_path / "wiki.jsonl"
    path.write_bytes(jsonl_bytes(records))
    passages = list(split_documents(read_documents(path), max_chars=100, overlap_chars=20))
    assert passages[0].id == "1" and passages[0].text == WIKI_PASSAGES[0]["text"]
    chunks = passages[1:]
    assert [p.id for p in chunks] == [f"2#{i}" for i in range(len(chunks))] and len(chunks) > 3
    assert all(
        p.metadata == {"source": "wiki.jsonl", "pageid": 5, "revid": 94384329, "section": "歴史"}
        for p in chunks
    )
    assert all(p.url == wikipedia_url("アンパサンド") for p in chunks)


def test_extra_fields_become_metadata_and_a_given_url_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(
        jsonl_bytes(
            [
                {
                    "id": "a",
                    "text": "本文。",
                    "url": "https://example.org/a",
                    "pageid": 3,
                    "updated": "2024-04-01",
                    "tags": ["雨", "梅雨"],
                    "score": float("nan"),
                    "draft": False,
                },
                {"id": "b", "text": "本文。", "source": "社内規程"},
            ]
        )
    )
    a, b = read_documents(path)
    assert a.url == "https://example.org/a"
    assert a.metadata == {
        "source": "docs.jsonl",
        "pageid": 3,
        "updated": "2024-04-01",
        "tags": '["雨", "梅雨"]',
        "score": None,
        "draft": False,
    }
    assert b.url is None, "no pageid: not a Wikipedia article"
    assert b.metadata == {"source": "社内規程"}, "the corpus's own field wins"


def test_metadata_values() -> None:
    assert metadata_value(datetime.date(2023, 4, 3)) == "2023-04-03"
    assert metadata_value(datetime.datetime(2023, 4, 3, 9, 30)) == "2023-04-03T09:30:00"
    assert metadata_value(math.inf) is None and metadata_value(1.5) == 1.5
    assert metadata_value({"a": [1]}) == '{"a": [1]}' and metadata_value(b"\xe9\x9b\xa8") == "雨"


def write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)


def test_parquet_shards_in_the_wikipedia_utils_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(corpus, "PARQUET_BATCH_ROWS", 2)
    shards = tmp_path / "passages-c400-jawiki-20230403"
    shards.mkdir()
    written = datetime.datetime(2023, 4, 3, tzinfo=datetime.timezone.utc)
    rows = [{**r, "written": written} for r in WIKI_PASSAGES]
    bad = {**WIKI_PASSAGES[0], "id": 4, "text": None, "written": written}
    write_shard(shards / "train-00000-of-00002.parquet", [rows[0], bad, rows[1]])
    write_shard(shards / "train-00001-of-00002.parquet", [rows[2]])
    (shards / "_SUCCESS").write_text("")
    (shards / "README.txt.gz").write_bytes(gzip.compress(b"not read"))
    problems = CorpusProblems()
    documents = list(read_documents(shards, problems))
    assert [d.id for d in documents] == ["1", "2", "3"]
    assert documents[0].metadata == {
        "source": "train-00000-of-00002.parquet",
        "pageid": 5,
        "revid": 94384329,
        "section": "__LEAD__",
        "written": "2023-04-03T00:00:00+00:00",
    }
    assert documents[2].metadata["source"] == "train-00001-of-00002.parquet"
    assert documents[2].url == wikipedia_url("言語 (哲学)")
    assert problems.examples == [
        f"{shards / 'train-00000-of-00002.parquet'} row 2: 'text' must be a non-empty string"
    ]
    with pytest.raises(CorpusError, match=r"train-00000-of-00002\.parquet row 2: 'text'"):
        list(read_documents(shards))


def test_parquet_without_a_text_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.parquet"
    write_shard(path, [{"body": "本文"}])
    with pytest.raises(CorpusError, match=r"no 'text' column \(columns: body\)"):
        list(read_documents(path, CorpusProblems()))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(CorpusError, match="not a readable Parquet file"):
        list(read_documents(garbage))


@pytest.mark.parametrize(
    ("name", "module"), [("docs.jsonl.zst", "zstandard"), ("docs.parquet", "pyarrow.parquet")]
)
def test_a_missing_optional_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'ja-rag-serve\[corpus\]'"):
        list(read_documents(path))


MARKDOWN = """---
title: 就業規則
date: 2024-04-01
tags: [人事, 規程]
---
# 見出しはタイトルにならない

第一条　この規則は従業員の就業に関する事項を定める。

## 勤務時間

始業は午前九時とする。終業は午後六時とする。
"""


def test_a_folder_of_markdown_and_text_files(tmp_path: Path) -> None:
    folder = tmp_path / "handbook"
    (folder / "rules").mkdir(parents=True)
    (folder / "rules" / "work.md").write_text(MARKDOWN, encoding="utf-8")
    (folder / "faq.md").write_text("# よくある質問\n\n休暇は年に二十日である。\n", "utf-8")
    (folder / "memo.txt").write_text("\ufeff会議は毎週月曜日に開く。\n議事録は共有する。", "utf-8")
    (folder / "empty.md").write_text("# 題だけ\n", "utf-8")
    (folder / ".draft.md").write_text("下書き。", "utf-8")
    (folder / "photo.png").write_bytes(b"\x89PNG")
    problems = CorpusProblems()
    documents = {d.id: d for d in read_documents(folder, problems)}
    assert list(documents) == ["faq.md", "memo.txt", "rules/work.md"]
    work = documents["rules/work.md"]
    assert work.title == "就業規則"
    assert work.metadata == {
        "source": "rules/work.md",
        "date": "2024-04-01",
        "tags": '["人事", "規程"]',
    }
    assert work.text.startswith("見出しはタイトルにならない\n\n第一条")
    assert "\n勤務時間\n" in work.text and "#" not in work.text
    faq = documents["faq.md"]
    assert faq.title == "よくある質問" and faq.text == "休暇は年に二十日である。"
    memo = documents["memo.txt"]
    assert memo.title == "memo" and memo.text.startswith("会議は") and memo.url is None
    assert problems.examples == [f"{folder / 'empty.md'}: no text"]
    passages = list(split_documents([work], max_chars=30, overlap_chars=0))
    assert len(passages) > 1
    assert all(p.text.endswith(("。", "勤務時間", "ない")) for p in passages), "cut at sentences"
    assert all(p.metadata == work.metadata and p.doc_id == "rules/work.md" for p in passages)


def test_broken_front_matter_and_non_utf8_text_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\ntitle: [unclosed\n---\n本文。\n", "utf-8")
    (tmp_path / "b.txt").write_bytes("本文。".encode("shift_jis"))
    (tmp_path / "c.txt").write_text("正しい本文。", "utf-8")
    problems = CorpusProblems()
    assert [d.id for d in read_documents(tmp_path, problems)] == ["c.txt"]
    assert problems.count == 2
    assert "a.md:1: front matter is not valid YAML" in problems.examples[0]
    assert "b.txt: not UTF-8 text" in problems.examples[1]


def test_an_id_seen_in_an_earlier_file_is_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(jsonl_bytes(WIKI_PASSAGES[:2]))
    (tmp_path / "b.jsonl").write_bytes(jsonl_bytes(WIKI_PASSAGES[1:]))
    problems = CorpusProblems()
    assert [d.id for d in read_documents(tmp_path, problems)] == ["1", "2", "3"]
    assert problems.examples == [f"{tmp_path / 'b.jsonl'}:1: duplicate id '2'"]


def test_a_folder_without_corpus_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    with pytest.raises(CorpusError, match="no corpus files in this folder"):
        list(read_documents(tmp_path))


def test_a_byte_order_mark_and_a_compressed_squad_file(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes("\ufeff".encode() + jsonl_bytes(WIKI_PASSAGES[:2]))
    assert [d.id for d in read_documents(path)] == ["1", "2"]
    squad = {"data": [{"title": "梅雨", "paragraphs": [{"context": "梅雨は雨季である。"}]}]}
    packed = tmp_path / "squad-dev.json.gz"
    packed.write_bytes(gzip.compress(json.dumps(squad, ensure_ascii=False).encode()))
    (document,) = read_documents(packed)
    assert (document.id, document.title, document.text) == (
        "squad-dev:0:0",
        "梅雨",
        "梅雨は雨季である。",
    )
    assert document.metadata == {"source": "squad-dev.json.gz"}


def test_long_lists_such_as_vectors_stay_out_of_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [{**r, "emb": [0.125] * 384, "tags": ["記号"]} for r in WIKI_PASSAGES[:2]]
    write_shard(tmp_path / "with-vectors.parquet", rows)
    with caplog.at_level(logging.WARNING, logger=corpus.__name__):
        documents = list(read_documents(tmp_path / "with-vectors.parquet"))
    assert [d.metadata.get("emb") for d in documents] == [None, None]
    assert [d.metadata["tags"] for d in documents] == ['["記号"]', '["記号"]']
    assert len(caplog.records) == 1, "one warning per field"
    assert "field 'emb' left out of the metadata" in caplog.records[0].getMessage()
