from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployments.passage import Hit, Passage
from serve.cli import main
from serve.demo import DEMO_CORPUS, DEMO_QUESTIONS
from serve.evaluation.quality import RetrievalScores, char_f1, gold_rank, pool_questions

# Two paragraphs, four questions: three point at their paragraph with words found
# only there; the fourth names paragraph B as gold but asks with A's words, so
# B ranks second. Expected: recall@1 3/4, recall@5 1, MRR@10 (1+1+1+1/2)/4.
TINY_SQUAD = {
    "data": [
        {
            "title": "テスト",
            "paragraphs": [
                {
                    "context": "テスト [SEP] 北海道の道庁所在地は札幌市である。冬は雪が多い。",
                    "qas": [
                        {
                            "id": "a1",
                            "question": "北海道の道庁所在地はどこか。",
                            "answers": [{"text": "札幌市", "answer_start": 10}],
                        },
                        {
                            "id": "a2",
                            "question": "冬は何が多いか。",
                            "answers": [{"text": "雪", "answer_start": 20}],
                        },
                    ],
                },
                {
                    "context": "テスト [SEP] 沖縄県の県庁所在地は那覇市である。一年中温暖である。",
                    "qas": [
                        {
                            "id": "b1",
                            "question": "沖縄県の県庁所在地はどこか。",
                            "answers": [{"text": "那覇市", "answer_start": 10}],
                        },
                        {
                            "id": "b2",
                            "question": "北海道の道庁所在地はどこか。",
                            "answers": [{"text": "一年中温暖", "answer_start": 17}],
                        },
                    ],
                },
            ],
        }
    ]
}


def _hit(doc_id: str, chunk: int = 0) -> Hit:
    return Hit(Passage(f"{doc_id}#{chunk}", doc_id, "", ""), 0.0)


def test_gold_rank_counts_documents_not_chunks() -> None:
    hits = [_hit("x", 0), _hit("x", 1), _hit("y"), _hit("gold")]
    assert gold_rank(hits, "gold") == 3
    assert gold_rank(hits, "absent") is None


def test_recall_and_mrr_from_ranks() -> None:
    scores = RetrievalScores([1, 2, 6, None, 12])
    assert scores.recall(1) == pytest.approx(1 / 5)
    assert scores.recall(5) == pytest.approx(2 / 5)
    assert scores.recall(20) == pytest.approx(4 / 5)
    assert scores.mrr(10) == pytest.approx((1 + 1 / 2 + 1 / 6) / 5)


def test_char_f1_known_values() -> None:
    assert char_f1("札幌市", "札幌市") == 1.0
    assert char_f1("札幌", "札幌市") == pytest.approx(0.8)  # p=1, r=2/3
    assert char_f1("那覇", "札幌市") == 0.0
    assert char_f1("「札幌市」。", " 札幌市 ") == 1.0  # punctuation and spaces ignored


@pytest.fixture
def squad_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(TINY_SQUAD, ensure_ascii=False), encoding="utf-8")
    return path


def test_eval_retrieval_command_on_hand_made_file(squad_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "retrieval.json"
    assert (
        main(
            [
                "eval",
                "retrieval",
                str(squad_file),
                "--quiet",
                "--json",
                str(out),
                "--index-dir",
                str(tmp_path / "idx"),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["questions"] == 4 and report["documents"] == 2
    for row in report["results"].values():
        assert row["recall@1"] == pytest.approx(0.75)
        assert row["recall@5"] == pytest.approx(1.0)
        assert row["recall@20"] == pytest.approx(1.0)
        assert row["mrr@10"] == pytest.approx(0.875)


def test_eval_answers_command_on_hand_made_file(squad_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "answers.json"
    assert main(["eval", "answers", str(squad_file), "--quiet", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"].values()
    assert row["containment"] == pytest.approx(0.75)  # b2's answer is not in A's sentences
    assert 0 < row["char_f1"] < 1
    assert row["max_sentences"] <= 2


def test_eval_rejects_a_file_without_questions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text('{"data": []}', encoding="utf-8")
    assert main(["eval", "retrieval", str(empty), "--quiet"]) == 2
    assert "holds no questions" in capsys.readouterr().err


def _squad_file(path: Path, *paragraphs: int) -> Path:
    """A SQuAD-format file with some of TINY_SQUAD's paragraphs (0: A, 1: B)."""
    (article,) = json.loads(json.dumps(TINY_SQUAD))["data"]
    article["paragraphs"] = [article["paragraphs"][i] for i in paragraphs]
    path.write_text(json.dumps({"data": [article]}, ensure_ascii=False), encoding="utf-8")
    return path


def test_eval_retrieval_pools_several_question_files(tmp_path: Path) -> None:
    # TINY_SQUAD's two paragraphs in two files: the same figures as one file.
    files = [_squad_file(tmp_path / "dev-0.json", 0), _squad_file(tmp_path / "dev-1.json", 1)]
    out = tmp_path / "retrieval.json"
    command = ["eval", "retrieval", *map(str, files), "--quiet", "--json", str(out)]
    assert main([*command, "--index-dir", str(tmp_path / "idx")]) == 0
    report = json.loads(out.read_text())
    assert report["questions"] == 4 and report["documents"] == 2
    for row in report["results"].values():
        assert row["recall@1"] == pytest.approx(0.75)
        assert row["recall@20"] == pytest.approx(1.0)
        assert row["mrr@10"] == pytest.approx(0.875)


def test_pool_questions_keeps_file_order_and_refuses_a_repeated_name(tmp_path: Path) -> None:
    a = _squad_file(tmp_path / "a.json", 0)
    b = _squad_file(tmp_path / "b.json", 1)
    pooled = pool_questions([b, a])
    assert [q.id for q in pooled] == ["b1", "b2", "a1", "a2"]
    assert [q.doc_id.split(":")[0] for q in pooled] == ["b", "b", "a", "a"]
    (tmp_path / "again").mkdir()
    same_name = _squad_file(tmp_path / "again" / "a.json", 1)
    with pytest.raises(ValueError, match="different names"):
        pool_questions([a, same_name])


def test_eval_answers_on_questions_about_a_corpus_says_whether_answers_name_the_subject(
    tmp_path: Path,
) -> None:
    out = tmp_path / "answers.json"
    args = ["eval", "answers", str(DEMO_QUESTIONS), "--distractors", str(DEMO_CORPUS)]
    assert main([*args, "--limit", "12", "--quiet", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"].values()
    assert row["containment"] >= 0.75
    assert row["names_subject"] >= 0.9
