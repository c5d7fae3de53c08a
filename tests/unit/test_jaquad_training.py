from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from deployments.lexical.linear_model import LinearModel
from deployments.lexical.question_phrases import QuestionPhrases
from serve.training import generator as generator_training
from serve.training import reranker as reranker_training
from serve.training.generator import GeneratorTrainingSettings, train_sentence_scorer
from serve.training.jaquad import (
    PhraseSettings,
    fit_calibration,
    fit_listwise,
    learn_question_phrases,
)
from serve.training.reranker import TrainingSettings, train_lexical_reranker


def test_listwise_fit_learns_which_feature_marks_the_positive() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 10, 2))
    labels = np.zeros((200, 10), dtype=bool)
    labels[np.arange(200), features[:, :, 0].argmax(axis=1)] = True
    mean, scale, weights = fit_listwise(features, labels, iterations=200)
    assert weights[0] > 1.0 and abs(weights[1]) < 0.3 * weights[0]
    scores = ((features - mean) / scale) @ weights
    assert labels[np.arange(200), scores.argmax(axis=1)].mean() > 0.95
    again = fit_listwise(features, labels, iterations=200)
    np.testing.assert_array_equal(weights, again[2])


def test_listwise_fit_ignores_padding() -> None:
    features = np.array([[[1.0], [0.0], [100.0]], [[0.0], [1.0], [-100.0]]])
    labels = np.array([[True, False, False], [False, True, False]])
    valid = np.array([[True, True, False], [True, True, False]])
    _, _, weights = fit_listwise(features, labels, valid, iterations=100)
    assert weights[0] > 0


def test_calibration_recovers_a_logistic_relation() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=20_000)
    labels = rng.random(20_000) < 1 / (1 + np.exp(-(2.0 * scores - 1.0)))
    slope, intercept = fit_calibration(scores, labels)
    assert slope == pytest.approx(2.0, abs=0.15) and intercept == pytest.approx(-1.0, abs=0.1)


def test_question_phrases_are_frequent_in_questions_of_many_topics() -> None:
    questions = [f"{topic}は何ですか" for topic in ("富士山", "梅雨", "将棋", "桜")] + [
        "富士山の高さ"
    ]
    topics = ["a", "b", "c", "d", "a"]
    sentences = ["富士山は高い山である。", "梅雨は雨の季節である。", "将棋は遊びである。"]
    settings = PhraseSettings(min_question_share=0.5, min_articles=3, min_ratio=2.0)
    phrases = learn_question_phrases(questions, topics, sentences, settings)
    assert {"何", "ですか", "は何"} <= set(phrases)
    assert "富士" not in phrases, "asked about one topic only"
    assert "は" not in phrases, "as frequent in sentences as in questions"


def write_squad(
    path: Path, articles: list[tuple[str, list[tuple[str, list[tuple[str, str]]]]]]
) -> None:
    data = {
        "data": [
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": f"{title}-{i}-{j}",
                                "question": q,
                                "answers": [{"text": a, "answer_start": context.find(a)}],
                            }
                            for j, (q, a) in enumerate(qas)
                        ],
                    }
                    for i, (context, qas) in enumerate(paragraphs)
                ],
            }
            for title, paragraphs in articles
        ]
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_jaquad(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("jaquad")
    articles = [
        (
            "富士山",
            [
                (
                    "富士山は静岡県と山梨県にまたがる活火山である。標高は3776メートルである。",
                    [
                        ("富士山の標高は何メートルか", "3776メートル"),
                        ("富士山はどこにあるか", "静岡県と山梨県"),
                    ],
                )
            ],
        ),
        (
            "東京タワー",
            [
                (
                    "東京タワーは港区にある電波塔である。1958年に完成した。",
                    [
                        ("東京タワーはいつ完成したか", "1958年"),
                        ("東京タワーは何区にあるか", "港区"),
                    ],
                )
            ],
        ),
        (
            "将棋",
            [
                (
                    "将棋は二人で行うボードゲームである。相手の玉将を詰ませると勝ちになる。",
                    [("将棋は何人で行うか", "二人"), ("将棋で勝つには何を詰ませるか", "玉将")],
                )
            ],
        ),
        (
            "桜",
            [
                (
                    "桜はバラ科の落葉樹である。春に花見が行われる。",
                    [("桜は何科の植物か", "バラ科"), ("花見はいつ行われるか", "春")],
                )
            ],
        ),
    ]
    files = [folder / "train_0000.json", folder / "train_0001.json"]
    write_squad(files[0], articles[:2])
    write_squad(files[1], articles[2:])
    return files


def test_reranker_training_writes_a_loadable_model(tiny_jaquad: list[Path], tmp_path: Path) -> None:
    out, phrases_out = tmp_path / "weights.json", tmp_path / "phrases.json"
    settings = TrainingSettings(top_k=3, held_out_every=2, iterations=20)
    report = train_lexical_reranker(tiny_jaquad, out, phrases_out, settings, progress=False)
    assert (report.train_questions, report.held_out_questions) == (4, 4)
    assert report.passages == 4
    model = LinearModel.load(out)
    assert model.training["held_out"]["reranked"] == report.reranked
    QuestionPhrases.load(phrases_out)  # readable, here empty: too few questions


def test_generator_training_writes_a_loadable_model(
    tiny_jaquad: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "sentences.json"
    settings = GeneratorTrainingSettings(top_k=3, top_n=2, held_out_every=2, iterations=20)
    report = train_sentence_scorer(tiny_jaquad, out, settings, progress=False)
    assert report.train_questions == 4
    assert set(report.answers) == {f"second_sentence_ratio={r}" for r in settings.reported_ratios}
    assert LinearModel.load(out).training["held_out"] == report.answers


@pytest.mark.parametrize("trainer", [generator_training, reranker_training])
def test_trainers_refuse_a_folder_without_jaquad_files(
    trainer: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "valid.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        trainer.main(["--jaquad", str(tmp_path), "--out", str(tmp_path / "w.json")])
    assert exit_info.value.code == 2
    assert f"no train_*.json files in {tmp_path}" in capsys.readouterr().err
    assert not (tmp_path / "w.json").exists()
