"""``build_app``: validates the ``args:`` block and wires the five deployments (or the
same deployment classes in one process, without Ray)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from ray import serve
from ray.serve import Application

from deployments.embedder.deployment import Embedder
from deployments.generator.deployment import Generator
from deployments.index.format import check_embedder, read_manifest, resolve_version_dir
from deployments.ingress.deployment import Ingress
from deployments.ingress.stages import InProcess, Stages
from deployments.reranker.deployment import Reranker
from deployments.retriever.config import KnowledgeBaseConfig
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

EngineStage = Literal["embedder", "retriever", "reranker", "generator"]
Engines = Mapping[EngineStage, Callable[..., Any]]


def build_app(args: dict[str, Any]) -> Application:
    return build_graph(AppConfig.model_validate(args))


def build_graph(
    config: AppConfig,
    engines: Engines | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Application:
    """The graph for ``config``. ``engines`` puts another engine class in a stage (called
    like that stage's factory), as tests do to make a stage slow or wedged; ``options``
    overrides deployment options by deployment name, like a Serve config's
    ``deployments:`` section."""

    def bind(cls: type, *args: Any, **kwargs: Any) -> Any:
        name = cls.__name__
        settings = {**_RELIABILITY, **DEPLOYMENT_DEFAULTS[name], **(options or {}).get(name, {})}
        deployment = serve.deployment(
            cls, name=name, max_constructor_retry_count=_CONSTRUCTOR_RETRIES, **settings
        )
        return deployment.bind(*args, **kwargs)

    stages = _make_stages(config, engines or {}, bind)
    return bind(Ingress, config.ingress, config.retrieval_defaults(), *stages)


def in_process_stages(config: AppConfig, engines: Engines | None = None) -> Stages:
    """The same stage deployments as the graph, instantiated in this process (no Ray):
    how the single-process baseline and the HTTP-layer tests run them."""
    embedder, retriever, reranker, generator = _make_stages(config, engines or {}, _construct)
    return Stages(
        InProcess(embedder), InProcess(retriever), InProcess(reranker), InProcess(generator)
    )


def _pinned(base: KnowledgeBaseConfig) -> KnowledgeBaseConfig:
    version_dir = resolve_version_dir(base.path, base.version)
    return base.model_copy(update={"path": str(version_dir), "version": None})


def _construct(cls: type, *args: Any, **kwargs: Any) -> Any:
    return cls(*args, **kwargs)


def _make_stages(
    config: AppConfig, engines: Engines, make: Callable[..., Any]
) -> tuple[Any, Any, Any, Any]:
    """The four stage deployments over the served knowledge bases, each made by
    ``make(cls, *args, **kwargs)``: bound for Serve, or instantiated. Each base is pinned
    to the index version current now, so that every replica serves the same one; all
    must have been built by one embedder (the Embedder checks it is its own)."""
    bases = [_pinned(base) for base in config.served_knowledge_bases]
    index = bases[0].path
    first = read_manifest(Path(index), verify=False)
    for base in bases[1:]:
        check_embedder(
            read_manifest(Path(base.path), verify=False), first.embedder, Path(base.path)
        )
    return (
        make(Embedder, config.embedder, index, engine_cls=engines.get("embedder")),
        make(Retriever, config.retriever, bases, engine_cls=engines.get("retriever")),
        make(Reranker, config.reranker, index, engine_cls=engines.get("reranker")),
        make(Generator, config.generator, engine_cls=engines.get("generator")),
    )
