"""The sentence-transformers embedder, loaded through the real SentenceTransformer(path)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sentence_transformers import SentenceTransformer

from deployments.embedder.config import SentenceTransformersEmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.embedder.sentence_transformers import SentenceTransformerEmbedder
from deployments.extras import MissingDependencyError
from deployments.index.format import (
    InvalidIndexError,
    check_embedder,
    read_manifest,
    resolve_version_dir,
)
from tests.conftest import TinyModels, tiny_embedder_config


def config(model: Path, **settings: object) -> SentenceTransformersEmbedderConfig:
    return SentenceTransformersEmbedderConfig.model_validate(
        {"backend": "sentence-transformers", "model": str(model), **settings}
    )


@pytest.fixture(scope="module")
def embedder(tiny_models: TinyModels) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(tiny_embedder_config(tiny_models))


def test_vectors_are_unit_float32_rows(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed_passages(["香川県の県庁所在地は高松市である。", "沖縄県"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_queries([]).shape == (0, 32)


def test_queries_and_passages_get_their_family_prefixes(
    embedder: SentenceTransformerEmbedder, tiny_models: TinyModels
) -> None:
    model = SentenceTransformer(str(tiny_models.embedder), device="cpu")
    text = "香川県の県庁所在地はどこですか"
    expected_query, expected_passage = model.encode(
        ["クエリ: " + text, "文章: " + text], normalize_embeddings=True
    )
    assert np.allclose(embedder.embed_queries([text])[0], expected_query, atol=1e-6)
    assert np.allclose(embedder.embed_passages([text])[0], expected_passage, atol=1e-6)


def test_identity_records_what_decides_a_vector(embedder: SentenceTransformerEmbedder) -> None:
    identity = embedder.identity
    assert identity.backend == "sentence-transformers"
    assert identity.dimension == 32
    assert identity.settings["query_prefix"] == "クエリ: "
    assert identity.settings["passage_prefix"] == "文章: "
    assert identity.settings["normalize"] is True
    assert identity.settings["max_seq_length"] == 128


def test_prefix_presets_and_explicit_prefixes(tmp_path: Path) -> None:
    assert config(tmp_path, prefix_preset="multilingual-e5").prefixes == ("query: ", "passage: ")
    assert config(tmp_path, prefix_preset="ruri-v3").prefixes == ("検索クエリ: ", "検索文書: ")
    explicit = config(tmp_path, prefix_preset="ruri-v1", query_prefix="Q: ")
    assert explicit.prefixes == ("Q: ", "文章: ")
    assert config(tmp_path).prefixes == ("", "")


def test_models_trained_with_prefixes_must_say_which() -> None:
    with pytest.raises(ValidationError, match="prefix_preset"):
        config(Path("cl-nagoya/ruri-large"))
    with pytest.raises(ValidationError, match="multilingual-e5"):
        config(Path("intfloat/multilingual-e5-large"))
    assert config(Path("intfloat/multilingual-e5-large"), query_prefix="", passage_prefix="")


def test_index_manifest_records_the_embedder_and_serving_refuses_another(
    st_index: Path, tiny_models: TinyModels
) -> None:
    version = resolve_version_dir(st_index)
    manifest = read_manifest(version)
    assert manifest.embedder.settings["query_prefix"] == "クエリ: "
    served = create_embedder(tiny_embedder_config(tiny_models), version)
    check_embedder(manifest, served.identity, version)
    other = SentenceTransformerEmbedder(config(tiny_models.embedder, prefix_preset="none"))
    with pytest.raises(InvalidIndexError, match="query_prefix"):
        check_embedder(manifest, other.identity, version)


def test_max_seq_length_is_applied_and_recorded(tiny_models: TinyModels) -> None:
    engine = SentenceTransformerEmbedder(config(tiny_models.embedder, max_seq_length=16))
    assert engine.model.max_seq_length == 16
    assert engine.identity.settings["max_seq_length"] == 16


def test_japanese_word_segmentation_loads_with_fugashi(tiny_models: TinyModels) -> None:
    engine = SentenceTransformerEmbedder(
        config(tiny_models.mecab_embedder, prefix_preset="ruri-v1")
    )
    assert engine.model.tokenizer.word_tokenizer.__class__.__name__ == "MecabTokenizer"
    assert engine.embed_queries(["香川県"]).shape == (1, 32)


def test_missing_japanese_tokenizer_names_the_extra(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fugashi", None)
    with pytest.raises(MissingDependencyError, match=r"fugashi.*pip install 'ja-rag-serve\[ja\]'"):
        SentenceTransformerEmbedder(config(tiny_models.mecab_embedder, prefix_preset="ruri-v1"))


def test_missing_sentence_transformers_names_the_extra(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependencyError, match=r"ja-rag-serve\[models\]"):
        SentenceTransformerEmbedder(tiny_embedder_config(tiny_models))


def test_cuda_without_a_gpu_is_a_clear_error(tiny_models: TinyModels) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
        SentenceTransformerEmbedder(config(tiny_models.embedder, device="cuda"))
