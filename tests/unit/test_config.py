from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

import deployments
import serve
from deployments.config import StrictConfig
from deployments.index.format import InvalidIndexError
from serve.app import build_app
from serve.config import AppConfig
from serve.config_file import ConfigFileError, load_app_config
from serve.demo import DEMO_CONFIG
from tests.support import REPO


def _config_models() -> list[type[BaseModel]]:
    for package in (deployments, serve):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.endswith((".deployment", ".app", ".cli")):
                importlib.import_module(module.name)
    found: list[type[BaseModel]] = []
    pending = list(StrictConfig.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_config_field_is_described() -> None:
    models = _config_models()
    assert len(models) >= 10
    undocumented = [
        f"{model.__name__}.{name}"
        for model in models
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert undocumented == []


def test_unknown_keys_are_rejected_with_their_name() -> None:
    with pytest.raises(ValidationError, match=r"retriever\.topk"):
        AppConfig.model_validate({"index": {"path": "x"}, "retriever": {"topk": 3}})
    with pytest.raises(ValidationError, match="index"):
        AppConfig.model_validate({})


def test_demo_config_validates() -> None:
    config = load_app_config(DEMO_CONFIG)
    assert config.index.path == "indexes/demo"
    assert config.generator.backend == "extractive"


def test_production_config_validates() -> None:
    config = load_app_config(REPO / "serve_config.yaml")
    assert config.index.path


def test_config_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="does not exist"):
        load_app_config(tmp_path / "absent.yaml")
    other = tmp_path / "other.yaml"
    other.write_text("applications:\n  - name: x\n    import_path: other:app\n")
    with pytest.raises(ConfigFileError, match="exactly one application"):
        load_app_config(other)


def test_build_app_rejects_bad_args_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        build_app({"index": {"path": str(tmp_path)}, "generator": {"backend": "gpt-9"}})
    with pytest.raises(InvalidIndexError, match="jarag index build"):
        build_app({"index": {"path": str(tmp_path / "missing")}})


def test_build_app_wires_an_application(tiny_index: Path) -> None:
    from ray.serve import Application

    assert isinstance(build_app({"index": {"path": str(tiny_index)}}), Application)
