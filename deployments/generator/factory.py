"""Builds the configured generator engine."""

from __future__ import annotations

from deployments.generator.config import ExtractiveGeneratorConfig, GeneratorConfig
from deployments.generator.extractive import ExtractiveGenerator
from deployments.generator.protocol import GeneratorEngine


def create_generator(config: GeneratorConfig) -> GeneratorEngine:
    if isinstance(config, ExtractiveGeneratorConfig):
        return ExtractiveGenerator(config)
    raise TypeError(f"unsupported generator config {type(config).__name__}")
