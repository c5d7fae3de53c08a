"""The model presets in serve/presets: overlays of serve_config.yaml that `jarag check`
accepts on one GPU box, one at a time and all together."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployments.embedder.config import SentenceTransformersEmbedderConfig
from deployments.generator.config import VLLMGeneratorConfig
from deployments.reranker.config import CrossEncoderRerankerConfig
from serve.config import AppConfig
from serve.config_file import apply_overlays
from serve.ops.preflight import check, format_report
from tests.unit.test_packing import node

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "serve" / "presets").glob("*.yaml"))
MODELS = {
    "embedder": "cl-nagoya/ruri-v3-310m",
    "reranker": "hotchpotch/japanese-reranker-base-v2",
    "generator": "tokyotech-llm/Qwen3-Swallow-8B-RL-v0.2",
}


def applied(tmp_path: Path, presets: list[Path]) -> Path:
    merged = apply_overlays(REPO / "serve_config.yaml", presets)
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(merged, allow_unicode=True), encoding="utf-8")
    return path


def test_there_is_a_preset_per_model_stage() -> None:
    assert [p.name.split("-")[0] for p in PRESETS] == ["embedder", "generator", "reranker"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_each_preset_passes_the_preflight_check(preset: Path, tmp_path: Path) -> None:
    overlay = yaml.safe_load(preset.read_text(encoding="utf-8"))
    (app,) = overlay["applications"]
    assert set(app) == {"name", "args"}, "a preset changes the stage settings only"
    (stage,) = app["args"]
    path = applied(tmp_path, [preset])
    report = check(path, nodes=[node("gpu-box", cpus=16, gpus=1)])
    assert report.ok, format_report(report)
    served = yaml.safe_load(path.read_text(encoding="utf-8"))["applications"][0]["args"]
    assert served[stage]["model"] == MODELS[stage]


def test_the_presets_together_share_one_gpu(tmp_path: Path) -> None:
    path = applied(tmp_path, PRESETS)
    report = check(path, nodes=[node("gpu-box", cpus=16, gpus=1)])
    assert report.ok, format_report(report)
    assert "Generator 0.7 + Embedder 0.1 + Reranker 0.1" in format_report(report)
    args = yaml.safe_load(path.read_text(encoding="utf-8"))["applications"][0]["args"]
    config = AppConfig.model_validate(args)
    assert isinstance(config.embedder, SentenceTransformersEmbedderConfig)
    assert (config.embedder.model, config.embedder.prefix_preset) == (
        MODELS["embedder"],
        "ruri-v3",
    )
    assert isinstance(config.reranker, CrossEncoderRerankerConfig)
    assert config.reranker.model == MODELS["reranker"]
    assert isinstance(config.generator, VLLMGeneratorConfig)
    assert config.generator.model == MODELS["generator"]
