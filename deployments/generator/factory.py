"""Builds the configured generator engine."""

from __future__ import annotations

from typing import Any

from deployments.generator.config import (
    ExtractiveGeneratorConfig,
    GeneratorConfig,
    OpenAIGeneratorConfig,
    TransformersGeneratorConfig,
    VLLMGeneratorConfig,
)
from deployments.generator.extractive import ExtractiveGenerator
from deployments.generator.openai import OpenAIGenerator
from deployments.generator.protocol import GeneratorEngine
from deployments.generator.transformers import TransformersGenerator
from deployments.generator.vllm import VLLMGenerator


def create_generator(
    config: GeneratorConfig, placement_group: Any | None = None
) -> GeneratorEngine:
    """The engine for ``config``; ``placement_group`` is the replica's, for vLLM's
    tensor-parallel workers."""
    if isinstance(config, ExtractiveGeneratorConfig):
        return ExtractiveGenerator(config)
    if isinstance(config, VLLMGeneratorConfig):
        return VLLMGenerator(config, placement_group)
    if isinstance(config, TransformersGeneratorConfig):
        return TransformersGenerator(config)
    if isinstance(config, OpenAIGeneratorConfig):
        return OpenAIGenerator(config)
    raise TypeError(f"unsupported generator config {type(config).__name__}")
