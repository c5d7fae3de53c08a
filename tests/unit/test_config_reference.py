"""docs/configuration.md is generated from the pydantic models: it matches them, it
documents every field of every stage and backend, and every field has a description."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field

from deployments.config import StrictConfig
from deployments.embedder.config import SentenceTransformersEmbedderConfig
from deployments.generator.config import PromptSettings, VLLMGeneratorConfig
from deployments.ingress.config import AuthConfig, CorsConfig, IngressConfig
from deployments.reranker.config import CrossEncoderRerankerConfig, LexicalRerankerConfig
from deployments.retriever.config import RetrieverConfig
from serve.cli import main
from serve.config import AppConfig
from serve.ops import config_reference
from serve.ops.config_reference import (
    config_models,
    missing_descriptions,
    reference_markdown,
    sections,
    slug,
)
from tests.support import REPO

PAGE = REPO / config_reference.PAGE


def test_the_committed_page_matches_the_models() -> None:
    assert PAGE.exists(), f"{PAGE} is missing: run `{config_reference.COMMAND}`"
    assert PAGE.read_text(encoding="utf-8") == reference_markdown(), (
        f"{config_reference.PAGE} differs from the config models: run "
        f"`{config_reference.COMMAND}` and commit the page"
    )


def test_every_field_and_model_has_a_description() -> None:
    missing = [name for model in config_models() for name in missing_descriptions(model)]
    assert missing == [], f"config fields without a description: {missing}"


def test_a_field_without_description_is_reported() -> None:
    class Undocumented(StrictConfig):
        described: int = Field(1, description="Has one.")
        bare: int = 2

    assert missing_descriptions(Undocumented) == ["Undocumented", "Undocumented.bare"]


def test_the_page_says_it_is_generated_and_by_which_command() -> None:
    page = reference_markdown()
    assert "Generated from the pydantic models by `jarag config reference`" in page
    assert page.startswith("# Configuration reference\n")


def test_every_stage_has_a_section_and_every_backend_one_of_its_own() -> None:
    titles = [s.title for s in sections()]
    assert titles[:2] == ["args", "index"]
    for key in AppConfig.model_fields:
        assert key in titles, key
    for backend in (
        "embedder: hashing",
        "embedder: sentence-transformers",
        "reranker: lexical",
        "reranker: cross-encoder",
        "generator: extractive",
        "generator: vllm",
        "generator: transformers",
        "generator: openai",
    ):
        assert backend in titles, backend
        stage = backend.split(":")[0]
        assert titles.index(stage) < titles.index(backend), backend
    # Nested blocks: the prompt settings shared by three backends are listed once.
    assert titles.count("generator.prompt") == 1
    assert {"ingress.auth", "ingress.cors", "generator.sampling"} <= set(titles)


def test_every_field_of_every_model_is_a_row_of_its_section() -> None:
    page = reference_markdown()
    for section in sections():
        if section.model is None:
            continue
        heading = "#" * section.level + " " + section.title + "\n"
        assert heading in page, heading
        body = page.split(heading, 1)[1].split("\n#", 1)[0]
        rows = re.findall(r"^\| `([a-z_0-9]+)` \|", body, flags=re.MULTILINE)
        assert sorted(rows) == sorted(section.model.model_fields), section.title
        if "backend" in section.model.model_fields:
            assert rows[0] == "backend", section.title


def test_rows_show_type_default_and_description() -> None:
    page = reference_markdown()
    top_k = RetrieverConfig.model_fields["top_k"].description
    assert f"| `top_k` | integer, >= 1, <= 1000 | `50` | {top_k} |" in page
    assert '| `device` | `"auto"` \\| `"cpu"` \\| `"cuda"` | `"auto"` |' in page
    assert "| `model` | string | **required** |" in page
    assert "| `revision` | string or null | `null` |" in page
    assert '| `allow_methods` | list of string | `["GET", "POST"]` |' in page
    # A newline in a default stays escaped, so the table row stays one line.
    assert '`"[{number}] {title}\\n{text}"`' in page
    # A stage's key in args links its backends and names the default one.
    assert "[`cross-encoder`](#reranker-cross-encoder)" in page
    assert "| backend `lexical` |" in page


def test_links_point_at_headings_of_the_page() -> None:
    page = reference_markdown()
    anchors = {slug(line.lstrip("#").strip()) for line in page.splitlines() if line[:1] == "#"}
    links = set(re.findall(r"\]\(#([^)]+)\)", page))
    assert links and links <= anchors, links - anchors


@pytest.mark.parametrize(
    ("title", "anchor"),
    [
        ("embedder: sentence-transformers", "embedder-sentence-transformers"),
        ("generator.prompt", "generatorprompt"),
        ("args", "args"),
    ],
)
def test_slug_follows_github_anchors(title: str, anchor: str) -> None:
    assert slug(title) == anchor


def test_the_documented_models_are_the_config_models() -> None:
    models = set(config_models())
    for model in (
        AppConfig,
        SentenceTransformersEmbedderConfig,
        LexicalRerankerConfig,
        CrossEncoderRerankerConfig,
        VLLMGeneratorConfig,
        PromptSettings,
        IngressConfig,
        AuthConfig,
        CorsConfig,
    ):
        assert model in models, model.__name__


def test_the_command_writes_the_page_and_check_detects_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "docs" / "configuration.md"
    assert main(["config", "reference", "--out", str(page), "--check"]) == 1
    assert "out of date (run `jarag config reference`)" in capsys.readouterr().err
    assert main(["config", "reference", "--out", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == reference_markdown()
    assert main(["config", "reference", "--out", str(page), "--check"]) == 0
    page.write_text(reference_markdown().replace("Candidates", "Hits"), encoding="utf-8")
    assert main(["config", "reference", "--out", str(page), "--check"]) == 1
    assert "Hits" in page.read_text(encoding="utf-8")  # --check writes nothing
