"""``build_app``: validates the ``args:`` block and wires the five deployments."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from ray import serve
from ray.serve import Application

from deployments.embedder.deployment import Embedder
from deployments.generator.deployment import Generator
from deployments.index.format import read_manifest, resolve_version_dir
from deployments.ingress.deployment import Ingress
from deployments.reranker.deployment import Reranker
from deployments.retriever.deployment import Retriever
from serve.config import AppConfig

# Every stage sheds load once its queue is full (503 with Retry-After, as JSON from
# the ingress), checks its engine every 10 s, and finishes its admitted requests
# before it stops (the ingress's deadline is 60 s by default).
_RELIABILITY: dict[str, Any] = {
    "backpressure_config": {"status_code": 503, "retry_after_s": 1},
    "health_check_period_s": 10,
    "health_check_timeout_s": 30,
    "graceful_shutdown_wait_loop_s": 2,
    "graceful_shutdown_timeout_s": 75,
    "max_surge_percent": 100,
}
DEPLOYMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "Ingress": {
        "ray_actor_options": {"num_cpus": 0.25},
        "max_ongoing_requests": 256,
        "max_queued_requests": 512,
    },
    "Embedder": {
        "ray_actor_options": {"num_cpus": 0.25},
        "max_ongoing_requests": 64,
        "max_queued_requests": 128,
    },
    "Retriever": {
        "ray_actor_options": {"num_cpus": 0.25},
        "max_ongoing_requests": 64,
        "max_queued_requests": 128,
    },
    "Reranker": {
        "ray_actor_options": {"num_cpus": 0.25},
        "max_ongoing_requests": 32,
        "max_queued_requests": 64,
    },
    "Generator": {
        "ray_actor_options": {"num_cpus": 0.25},
        "max_ongoing_requests": 32,
        "max_queued_requests": 64,
    },
}
"""Light options that fit a laptop, used where the Serve config's ``deployments:`` section
says nothing; production values live in serve_config.yaml."""
_CONSTRUCTOR_RETRIES = 3
"""A replica that cannot start (missing model, wrong index) fails the deploy quickly."""

EngineStage = Literal["embedder", "reranker", "generator"]


def build_app(args: dict[str, Any]) -> Application:
    return build_graph(AppConfig.model_validate(args))


def build_graph(
    config: AppConfig,
    engines: Mapping[EngineStage, Callable[..., Any]] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Application:
    """The graph for ``config``. ``engines`` puts another engine class in a stage (called
    like that stage's factory), as tests do to make a stage slow or wedged; ``options``
    overrides deployment options by deployment name, like a Serve config's
    ``deployments:`` section."""
    index_dir = resolve_version_dir(config.index.path, config.index.version)
    read_manifest(index_dir, verify=False)
    index = str(index_dir)
    engine = dict(engines or {})

    def stage(cls: type, name: str) -> Any:
        settings = {**_RELIABILITY, **DEPLOYMENT_DEFAULTS[name], **(options or {}).get(name, {})}
        return serve.deployment(
            cls, name=name, max_constructor_retry_count=_CONSTRUCTOR_RETRIES, **settings
        )

    embedder = stage(Embedder, "Embedder").bind(
        config.embedder, index, engine_cls=engine.get("embedder")
    )
    retriever = stage(Retriever, "Retriever").bind(config.retriever, config.index, index)
    reranker = stage(Reranker, "Reranker").bind(
        config.reranker, index, engine_cls=engine.get("reranker")
    )
    generator = stage(Generator, "Generator").bind(
        config.generator, engine_cls=engine.get("generator")
    )
    return stage(Ingress, "Ingress").bind(config.ingress, embedder, retriever, reranker, generator)
