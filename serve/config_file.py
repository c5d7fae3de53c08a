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


def merge_overlay(base: Any, overlay: Any, where: str = "") -> Any:
    """``overlay`` merged onto ``base`` (neither is changed): mappings key by key, lists of
    named entries (``applications``, ``deployments``) entry by entry by ``name``; any
    other value of the overlay replaces the base's. An overlay entry whose name the base
    lacks is refused, so that a misspelt name is an error rather than a setting silently
    left out."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            path = f"{where}.{key}" if where else str(key)
            merged[key] = merge_overlay(base[key], value, path) if key in base else value
        return merged
    if _named_entries(base) and _named_entries(overlay):
        by_name = {entry["name"]: i for i, entry in enumerate(base)}
        merged_list = list(base)
        for entry in overlay:
            name = entry["name"]
            if name not in by_name:
                known = ", ".join(str(n) for n in by_name)
                raise ConfigFileError(
                    f"overlay {where}: no entry named {name!r} in the base config (it has: {known})"
                )
            position = by_name[name]
            merged_list[position] = merge_overlay(base[position], entry, f"{where}[{name}]")
        return merged_list
    return overlay


def _named_entries(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(entry, dict) and "name" in entry for entry in value)
    )


def load_overlay(path: Path) -> dict[str, Any]:
    """An overlay file: a mapping shaped like (part of) a Serve config."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigFileError(f"{path} does not exist") from error
    except yaml.YAMLError as error:
        raise ConfigFileError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path} is not a mapping (an overlay is part of a Serve config)")
    return data


def apply_overlays(base: Path, overlays: list[Path]) -> dict[str, Any]:
    """The Serve config ``base`` with ``overlays`` merged onto it in order, its
    applications' ``args:`` validated."""
    merged: dict[str, Any] = load_serve_config(base)
    for overlay in overlays:
        merged = merge_overlay(merged, load_overlay(overlay))
    for app in merged["applications"]:
        if isinstance(app, dict) and app.get("import_path") == IMPORT_PATH:
            try:
                AppConfig.model_validate(app.get("args") or {})
            except ValueError as error:
                name = app.get("name", "?")
                raise ConfigFileError(
                    f"{base} with {', '.join(map(str, overlays))}: application {name!r}: {error}"
                ) from error
    return merged
