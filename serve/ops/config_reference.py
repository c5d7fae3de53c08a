"""The configuration reference (docs/configuration.md), generated from the pydantic models.

Every section, table row and description comes from the models themselves: the
application's ``AppConfig``, the stage configs it nests and, for a stage with several
engines, one section per ``backend`` of its discriminated union. ``jarag config
reference`` writes the page; a unit test fails while the committed page differs.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, SecretStr, Tag
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from serve.config import AppConfig

PAGE = Path("docs/configuration.md")
"""Where ``jarag config reference`` writes the page, relative to the repository root."""

COMMAND = "jarag config reference"


@dataclass(frozen=True)
class Backend:
    """One engine of a stage whose config is chosen by its ``backend`` key."""

    tag: str
    model: type[BaseModel]
    default: bool
    """Whether a block without ``backend`` selects this one."""


@dataclass(frozen=True)
class Section:
    """A heading of the page and the model whose fields its table lists."""

    path: str
    """The keys leading to the block, e.g. ``generator.prompt``; ``args`` for the root."""
    title: str
    level: int
    model: type[BaseModel] | None
    """None for a stage chosen by ``backend``: its section lists the choices, and each
    backend has a section of its own below it."""
    backends: tuple[str, ...] = ()
    """For a model nested in backends' blocks: the backends that have it."""

    @property
    def anchor(self) -> str:
        return slug(self.title)


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as '-'."""
    kept = re.sub(r"[^\w\- ]", "", title.lower())
    return kept.replace(" ", "-")


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def backends(field: FieldInfo) -> tuple[Backend, ...]:
    """The engines of a field typed as a discriminated union of tagged configs; empty for
    any other field."""
    annotation = _strip_annotated(field.annotation)
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return ()
    default = field.default_factory if callable(field.default_factory) else None
    found = []
    for member in typing.get_args(annotation):
        tags = [m.tag for m in getattr(member, "__metadata__", ()) if isinstance(m, Tag)]
        model = _strip_annotated(member)
        if not tags or not _is_model(model):
            return ()
        found.append(Backend(tags[0], model, model is default))
    return tuple(found)


def _nested_models(field: FieldInfo) -> list[type[BaseModel]]:
    """Config models a field holds (not through a union of backends): itself, or inside
    a list or an optional or other union (``knowledge_bases``)."""
    return _models_in(field.annotation)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    annotation = _strip_annotated(annotation)
    if _is_model(annotation):
        return [annotation]
    found: list[type[BaseModel]] = []
    for member in typing.get_args(annotation):
        found += [m for m in _models_in(member) if m not in found]
    return found


def sections() -> list[Section]:
    """Every section of the page, in order: the ``args`` block, then each of its keys with,
    below it, its backends and the blocks nested in them (a nested block shared by
    several backends is listed once)."""
    result = [Section("args", "args", 2, AppConfig)]
    for name, field in AppConfig.model_fields.items():
        choices = backends(field)
        if choices:
            result.append(Section(name, name, 2, None))
            result += [Section(name, f"{name}: {b.tag}", 3, b.model, (b.tag,)) for b in choices]
            shared: dict[tuple[str, type[BaseModel]], list[str]] = {}
            for backend in choices:
                for key, inner in backend.model.model_fields.items():
                    for model in _nested_models(inner):
                        shared.setdefault((key, model), []).append(backend.tag)
            result += [
                Section(f"{name}.{key}", f"{name}.{key}", 3, model, tuple(tags))
                for (key, model), tags in shared.items()
            ]
            continue
        for model in _nested_models(field):
            result.append(Section(name, name, 2, model))
            result += _nested_sections(name, model, 3)
    return result


def _nested_sections(path: str, model: type[BaseModel], level: int) -> list[Section]:
    found = []
    for key, field in model.model_fields.items():
        for inner in _nested_models(field):
            found.append(Section(f"{path}.{key}", f"{path}.{key}", level, inner))
            found += _nested_sections(f"{path}.{key}", inner, level + 1)
    return found


def config_models() -> list[type[BaseModel]]:
    """Every model the page documents, once each."""
    seen: list[type[BaseModel]] = []
    for section in sections():
        if section.model is not None and section.model not in seen:
            seen.append(section.model)
    return seen


def missing_descriptions(model: type[BaseModel]) -> list[str]:
    """``Model.field`` for each field of ``model`` without a description, and ``Model``
    itself when it has no docstring."""
    missing = [] if (model.__doc__ or "").strip() else [model.__name__]
    missing += [
        f"{model.__name__}.{name}"
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    return missing


# --- rendering -----------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text fit for a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _value(value: Any) -> str:
    """A value as it would be written in the YAML config (JSON is valid YAML)."""
    if isinstance(value, SecretStr):
        return '"**********"'
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _constraints(field: FieldInfo) -> list[str]:
    found = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            found.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            found.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            found.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.Lt):
            found.append(f"< {item.lt}")
    return found


def type_name(annotation: Any, anchors: dict[type[BaseModel], str]) -> str:
    """A field's type in the words of a YAML config (mapping, list, string...)."""
    annotation = _strip_annotated(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(f"`{_value(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [type_name(a, anchors) for a in args if a is not type(None)]
        optional = " or null" if type(None) in args else ""
        return " or ".join(inner) + optional
    if origin in (tuple, list):
        items = [a for a in args if a is not Ellipsis]
        return f"list of {type_name(items[0], anchors)}" if items else "list"
    if origin is dict:
        return f"mapping of {type_name(args[0], anchors)} to {type_name(args[1], anchors)}"
    if _is_model(annotation):
        anchor = anchors.get(annotation)
        return f"[mapping](#{anchor})" if anchor else "mapping"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in names:
        return names[annotation]
    if annotation is SecretStr:
        return "string (secret)"
    return str(getattr(annotation, "__name__", annotation))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        if _is_model(field.default_factory):
            return "(its defaults)"
        factory: Any = field.default_factory
        return f"`{_value(factory())}`"
    if field.default is PydanticUndefined:
        return "**required**"
    return f"`{_value(field.default)}`"


def _row(name: str, field: FieldInfo, anchors: dict[type[BaseModel], str]) -> str:
    kind = type_name(field.annotation, anchors)
    limits = _constraints(field)
    if limits:
        kind += ", " + ", ".join(limits)
    return (
        "| "
        + " | ".join(
            (f"`{name}`", _cell(kind), _cell(_default(field)), _cell(field.description or ""))
        )
        + " |"
    )


def _union_row(name: str, field: FieldInfo, choices: tuple[Backend, ...]) -> str:
    kind = "mapping, by `backend`: " + ", ".join(
        f"[`{b.tag}`](#{slug(f'{name}: {b.tag}')})" for b in choices
    )
    default = next((b.tag for b in choices if b.default), None)
    shown = f"backend `{default}`" if default else "**required**"
    return (
        "| "
        + " | ".join((f"`{name}`", _cell(kind), _cell(shown), _cell(field.description or "")))
        + " |"
    )


def _docstring(model: type[BaseModel]) -> str:
    """The model's docstring in Markdown (reStructuredText's double backticks made single)."""
    return inspect.cleandoc(model.__doc__ or "").replace("``", "`")


_HEADER = ("| key | type | default | description |", "|---|---|---|---|")


def _section_lines(section: Section, anchors: dict[type[BaseModel], str]) -> Iterator[str]:
    yield "#" * section.level + " " + section.title
    yield ""
    if section.model is None:
        field = AppConfig.model_fields[section.path]
        choices = backends(field)
        default = next((b.tag for b in choices if b.default), None)
        yield (field.description or "").strip()
        yield ""
        chosen = ", ".join(f"[`{b.tag}`](#{slug(f'{section.path}: {b.tag}')})" for b in choices)
        line = f"The block's `backend` key chooses the engine: {chosen}."
        if default:
            line += f" A block without `backend` is `{default}`."
        yield line
        yield ""
        return
    if len(section.backends) > 1:
        yield "In the blocks of the backends " + ", ".join(f"`{b}`" for b in section.backends) + "."
        yield ""
    doc = _docstring(section.model)
    if doc:
        yield doc
        yield ""
    yield from _HEADER
    fields = section.model.model_fields.items()
    for name, field in sorted(fields, key=lambda item: item[0] != "backend"):
        choices = backends(field)
        yield _union_row(name, field, choices) if choices else _row(name, field, anchors)
    yield ""


def reference_markdown() -> str:
    """The whole page."""
    found = sections()
    anchors: dict[type[BaseModel], str] = {}
    for section in found:
        if section.model is not None and section.model is not AppConfig:
            anchors.setdefault(section.model, section.anchor)
    lines = [
        "# Configuration reference",
        "",
        f"Generated from the pydantic models by `{COMMAND}`; do not edit it by hand.",
        "A unit test fails while this page differs from the models.",
        "",
        "This is the application's configuration: the `args:` block of an application in a",
        "Serve config (`serve_config.yaml` for production, `serve/demo/demo_config.yaml` for",
        "the demo). Unknown keys are errors. Resources, replicas, autoscaling and",
        "`max_ongoing_requests` are not here: they belong in the Serve config's",
        "`deployments:` section, under the names `Ingress`, `Embedder`, `Retriever`,",
        "`Reranker` and `Generator` (see [Production](production.md)). The batching keys",
        "(`max_batch_size`, `batch_wait_timeout_s`, `batching`) can also be changed on running",
        "replicas through the deployment's `user_config`. `jarag check <config>` validates a",
        "file against this reference and Ray Serve's schema before anything runs.",
        "",
        "Defaults are written as they would be in YAML; `(its defaults)` means the block may",
        "be left out.",
        "",
        "Sections:",
        "",
    ]
    for section in found:
        indent = "  " * (section.level - 2)
        lines.append(f"{indent}- [{section.title}](#{section.anchor})")
    lines.append("")
    for section in found:
        lines += _section_lines(section, anchors)
    return "\n".join(lines).rstrip() + "\n"


def stale(page: Path) -> bool:
    """Whether ``page`` differs from what the models generate (or is missing)."""
    current = page.read_text(encoding="utf-8") if page.exists() else None
    return current != reference_markdown()


def write(page: Path) -> bool:
    """Writes the page; returns whether it changed."""
    if not stale(page):
        return False
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(reference_markdown(), encoding="utf-8")
    return True
