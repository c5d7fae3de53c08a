"""Optional dependencies: a missing one fails with the extra that installs it."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

PROJECT = "ja-rag-serve"


class MissingDependencyError(ImportError):
    """A backend needs a package that is not installed; the message names the extra."""


def install_hint(extra: str) -> str:
    return f"pip install '{PROJECT}[{extra}]'"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or fail with the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs the Python package {module!r}, which is not installed "
            f"({error}). Install it with: {install_hint(extra)}"
        ) from error


_MECAB_DICTIONARIES = {"unidic_lite": "unidic_lite", "unidic": "unidic", "ipadic": "ipadic"}


def check_japanese_tokenizer(model: str, revision: str | None = None) -> None:
    """Fail clearly when ``model``'s tokenizer runs MeCab (ruri v1, cl-tohoku BERT) and
    fugashi or its dictionary is missing.

    Without this, transformers reports only that it cannot build a tokenizer.
    Reads ``tokenizer_config.json`` from a local directory, or from the Hugging Face
    cache or hub; a model whose config cannot be read is not checked.
    """
    config = _tokenizer_config(model, revision)
    if config.get("word_tokenizer_type") != "mecab":
        return
    purpose = f"the tokenizer of {model} (MeCab word segmentation)"
    require("fugashi", "ja", purpose)
    dictionary = (config.get("mecab_kwargs") or {}).get("mecab_dic", "unidic_lite")
    if dictionary in _MECAB_DICTIONARIES:
        require(_MECAB_DICTIONARIES[dictionary], "ja", f"{purpose} with dictionary {dictionary}")


def _tokenizer_config(model: str, revision: str | None) -> dict[str, Any]:
    local = Path(model).expanduser()
    if local.is_dir():
        path: Path | None = local / "tokenizer_config.json"
    else:
        path = _hub_file(model, "tokenizer_config.json", revision)
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _hub_file(repo_id: str, filename: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except Exception:  # offline, gated or absent: the model load reports it
        return None
