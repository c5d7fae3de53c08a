"""The stage configs: one class per backend, chosen by `backend`; the production graph."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from deployments.embedder.config import (
    HashingEmbedderConfig,
    SentenceTransformersEmbedderConfig,
)
from deployments.generator.config import (
    ExtractiveGeneratorConfig,
    OpenAIGeneratorConfig,
    VLLMGeneratorConfig,
    served_name,
)
from deployments.reranker.config import CrossEncoderRerankerConfig, LexicalRerankerConfig
from serve.config import AppConfig
from serve.config_file import load_app_config
from tests.support import REPO

INDEX = {"index": {"path": "x"}}


def test_a_block_without_backend_is_the_built_in_engine() -> None:
    config = AppConfig.model_validate(
        {**INDEX, "embedder": {"dimension": 2048}, "reranker": {}, "generator": {}}
    )
    assert isinstance(config.embedder, HashingEmbedderConfig)
    assert isinstance(config.reranker, LexicalRerankerConfig)
    assert isinstance(config.generator, ExtractiveGeneratorConfig)


def test_backend_selects_the_config_class_and_its_fields() -> None:
    config = AppConfig.model_validate(
        {
            **INDEX,
            "embedder": {"backend": "sentence-transformers", "model": "m", "prefix_preset": "none"},
            "reranker": {"backend": "cross-encoder", "model": "r"},
            "generator": {"backend": "openai", "base_url": "http://h/v1", "model": "g"},
        }
    )
    assert isinstance(config.embedder, SentenceTransformersEmbedderConfig)
    assert isinstance(config.reranker, CrossEncoderRerankerConfig)
    assert isinstance(config.generator, OpenAIGeneratorConfig)
    with pytest.raises(ValidationError, match=r"'gpt-9' .* does not match any of the expected"):
        AppConfig.model_validate({**INDEX, "generator": {"backend": "gpt-9"}})
    with pytest.raises(ValidationError, match=r"generator\.vllm\.dimension"):
        AppConfig.model_validate(
            {**INDEX, "generator": {"backend": "vllm", "model": "m", "dimension": 3}}
        )


def test_production_graph_models_and_gpu_shares() -> None:
    config = load_app_config(REPO / "serve_config.yaml")
    assert isinstance(config.embedder, SentenceTransformersEmbedderConfig)
    assert config.embedder.model == "cl-nagoya/ruri-large"
    assert config.embedder.prefixes == ("クエリ: ", "文章: ")
    assert isinstance(config.reranker, CrossEncoderRerankerConfig)
    assert config.reranker.model == "cl-nagoya/ruri-reranker-large"
    assert isinstance(config.generator, VLLMGeneratorConfig)
    assert config.generator.model == "elyza/Llama-3-ELYZA-JP-8B"
    data = yaml.safe_load((REPO / "serve_config.yaml").read_text(encoding="utf-8"))
    deployments = {d["name"]: d for d in data["applications"][0]["deployments"]}
    shares = {
        name: deployments[name]["ray_actor_options"].get("num_gpus", 0)
        for name in ("Embedder", "Reranker", "Generator")
    }
    assert shares == {"Embedder": 0.1, "Reranker": 0.1, "Generator": 0.7}
    assert sum(shares.values()) <= 1
    assert config.generator.gpu_memory_utilization <= shares["Generator"]
    assert all(
        "autoscaling_config" in d and "max_ongoing_requests" in d for d in deployments.values()
    )
    assert deployments["Embedder"]["max_ongoing_requests"] >= config.embedder.max_batch_size


def test_served_model_names() -> None:
    assert served_name("elyza/Llama-3-ELYZA-JP-8B", None) == "elyza/Llama-3-ELYZA-JP-8B"
    assert served_name("/models/elyza-8b/", None) == "elyza-8b"
    assert served_name("/models/x", "ja-chat") == "ja-chat"
