"""Dynamic batching, served: one Embedder or Reranker replica (the graph's deployment
class and config) driven through a DeploymentHandle, with batching on and then off
(switched live through ``reconfigure``, as a ``user_config`` change does)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deployments.embedder.config import EmbedderConfig
from deployments.embedder.deployment import Embedder
from deployments.reranker.config import RerankerConfig
from deployments.reranker.deployment import Reranker
from serve.bench.load import Point, Request, drive
from serve.bench.overhead import Plan
from serve.bench.processes import CpuWatch


@dataclass(frozen=True)
class StageLoad:
    """What one request to the stage carries."""

    stage: str
    """Embedder or Reranker."""
    texts: Sequence[str]
    """Embedder: one query text per request. Reranker: the documents of a request."""
    questions: Sequence[str]
    documents_per_request: int = 1

    @property
    def items_per_request(self) -> int:
        return 1 if self.stage == "Embedder" else self.documents_per_request


def requests(handle: Any, load: StageLoad) -> Request:
    texts, questions, docs = load.texts, load.questions, load.documents_per_request

    if load.stage == "Embedder":

        async def embed(number: int) -> None:
            await handle.embed_query.remote(texts[number % len(texts)])

        return embed

    async def score(number: int) -> None:
        documents = [texts[(number + i) % len(texts)] for i in range(docs)]
        await handle.score.remote(questions[number % len(questions)], documents)

    return score


def stage_app(
    stage: str, config: EmbedderConfig | RerankerConfig, index_dir: str, options: dict[str, Any]
) -> Any:
    """One Embedder or Reranker deployment on its own, as an application to run."""
    from ray import serve

    cls = Embedder if stage == "Embedder" else Reranker
    return serve.deployment(cls, name=stage, **options).bind(config, index_dir)


async def measure_batching(
    handle: Any,
    load: StageLoad,
    levels: Sequence[int],
    plan: Plan,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Point]:
    """Runs alternate between batching on and off at every level."""
    call = requests(handle, load)
    points = {
        (on, level): Point(f"{load.stage} batching {'on' if on else 'off'}", level)
        for on in (True, False)
        for level in levels
    }
    for point in points.values():
        point.items_per_request = load.items_per_request
    for run in range(plan.runs):
        for level in levels:
            for on in (True, False) if run % 2 == 0 else (False, True):
                await handle.reconfigure.remote({"batching": on})
                await drive(call, level, plan.warmup_s)
                watch = CpuWatch()
                watch.start()
                result = await drive(call, level, plan.seconds)
                result.cpu_ms = watch.stop()
                points[(on, level)].runs.append(result)
                progress(
                    f"run {run + 1}/{plan.runs} {load.stage} batching {'on' if on else 'off'} "
                    f"x{level}: {result.requests_per_s:.1f} req/s"
                )
    return list(points.values())
