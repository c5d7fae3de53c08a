"""``build_app``: validates the ``args:`` block and wires the five deployments."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from deployments.embedder.deployment import Embedder
from deployments.generator.deployment import Generator
from deployments.ingress.deployment import Ingress
from deployments.reranker.deployment import Reranker
from deployments.retriever.deployment import Retriever
from deployments.retriever.index_format import read_manifest, resolve_version_dir
from serve.config import AppConfig

DEPLOYMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "Ingress": {"ray_actor_options": {"num_cpus": 0.25}, "max_ongoing_requests": 256},
    "Embedder": {"ray_actor_options": {"num_cpus": 0.25}, "max_ongoing_requests": 64},
    "Retriever": {"ray_actor_options": {"num_cpus": 0.25}, "max_ongoing_requests": 64},
    "Reranker": {"ray_actor_options": {"num_cpus": 0.25}, "max_ongoing_requests": 32},
    "Generator": {"ray_actor_options": {"num_cpus": 0.25}, "max_ongoing_requests": 32},
}
"""Light options that fit a laptop, used where the Serve config's ``deployments:`` section
says nothing; production values live in serve_config.yaml."""
_CONSTRUCTOR_RETRIES = 3
"""A replica that cannot start (missing model, wrong index) fails the deploy quickly."""


def build_app(args: dict[str, Any]) -> Application:
    config = AppConfig.model_validate(args)
    index_dir = resolve_version_dir(config.index.path, config.index.version)
    read_manifest(index_dir, verify=False)
    index = str(index_dir)

    def stage(cls: type, name: str) -> Any:
        return serve.deployment(
            cls,
            name=name,
            max_constructor_retry_count=_CONSTRUCTOR_RETRIES,
            **DEPLOYMENT_DEFAULTS[name],
        )

    embedder = stage(Embedder, "Embedder").bind(config.embedder, index)
    retriever = stage(Retriever, "Retriever").bind(config.retriever, config.index, index)
    reranker = stage(Reranker, "Reranker").bind(config.reranker, index)
    generator = stage(Generator, "Generator").bind(config.generator)
    return stage(Ingress, "Ingress").bind(config.ingress, embedder, retriever, reranker, generator)
