"""Reading the application's settings out of a Serve config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from serve.config import AppConfig

IMPORT_PATH = "serve.app:build_app"


class ConfigFileError(ValueError):
    """A Serve config file that does not hold a usable ja-rag-serve application."""


def load_serve_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigFileError(f"{path} does not exist") from error
    except yaml.YAMLError as error:
        raise ConfigFileError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("applications"), list):
        raise ConfigFileError(f"{path} has no 'applications:' list (is it a Serve config file?)")
    return data


def find_application(serve_config: dict[str, Any], path: Path, name: str | None) -> dict[str, Any]:
    """The application entry built by ``serve.app:build_app`` (or the one called ``name``)."""
    apps = serve_config["applications"]
    ours = [a for a in apps if isinstance(a, dict) and a.get("import_path") == IMPORT_PATH]
    if name is not None:
        ours = [a for a in ours if a.get("name") == name]
    if len(ours) != 1:
        which = f"named {name!r} " if name else ""
        raise ConfigFileError(
            f"{path} must have exactly one application {which}with import_path {IMPORT_PATH}; "
            f"found {len(ours)}"
        )
    app: dict[str, Any] = ours[0]
    return app


def load_app_config(path: Path, name: str | None = None) -> AppConfig:
    """Validated ``args:`` of the application; relative index paths are left as written."""
    app = find_application(load_serve_config(path), path, name)
    return AppConfig.model_validate(app.get("args") or {})
