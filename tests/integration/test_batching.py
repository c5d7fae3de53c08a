"""How a stage replica groups concurrent calls into engine calls (the Reranker's
deployment, with an engine that writes down every call it gets)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from ray import serve

from deployments.reranker.config import RerankerConfig
from deployments.reranker.deployment import Reranker
from serve.config import AppConfig
from tests.integration.conftest import ServeCluster

pytestmark = pytest.mark.integration
ENGINE_CALL_S = 0.2


class RecordingScorer:
    """Scores a document by the number it is; writes each call's pair count to ``log``."""

    model_name = "recording"

    def __init__(self, log: Path, config: RerankerConfig, index_dir: Path) -> None:
        self.log = log

    def score(self, query: str, documents: Sequence[str]) -> NDArray[np.float32]:
        return self.score_pairs([(query, d) for d in documents])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> NDArray[np.float32]:
        if pairs and pairs[0][0] != "健康":  # the health probe's pairs are left out
            with self.log.open("a") as f:
                f.write(f"{len(pairs)}\n")
            time.sleep(ENGINE_CALL_S)
        return np.array([float(d) if d.isdigit() else 0.0 for _, d in pairs], dtype=np.float32)

    def relevance(self, raw_scores: NDArray[np.float32]) -> NDArray[np.float32]:
        return (raw_scores / 100).astype(np.float32)


def engine_calls(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


@pytest.fixture
def deploy(serve_cluster: ServeCluster, tmp_path: Path) -> Iterator[object]:
    names: list[str] = []

    def start(batch_wait_timeout_s: float) -> tuple[object, Path]:
        log = tmp_path / f"calls-{len(names)}.log"
        config = AppConfig.model_validate({"index": {"path": "."}}).reranker.model_copy(
            update={"batch_wait_timeout_s": batch_wait_timeout_s}
        )
        app = serve.deployment(
            Reranker, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32
        ).bind(config, str(tmp_path), engine_cls=functools.partial(RecordingScorer, log))
        name = f"batching-{len(names)}"
        names.append(name)
        return serve.run(app, name=name, route_prefix=None), log

    yield start
    for name in names:
        serve.delete(name)


async def score(handle: object, document: int) -> float:
    scores = await handle.score.remote("質問", [str(document)])  # type: ignore[attr-defined]
    return float(scores.raw[0])


def test_a_lone_call_runs_alone_and_calls_meanwhile_form_one_batch(deploy: object) -> None:
    handle, log = deploy(0.0)  # type: ignore[operator]

    async def run() -> list[float]:
        assert await score(handle, 99) == 99.0
        first = asyncio.ensure_future(score(handle, 0))
        await asyncio.sleep(ENGINE_CALL_S / 2)  # the first call is in the engine now
        rest = [asyncio.ensure_future(score(handle, n)) for n in range(1, 12)]
        return await asyncio.gather(first, *rest)

    assert asyncio.run(run()) == [float(n) for n in range(12)]
    calls = engine_calls(log)
    # The lone call and the first of the burst ran alone; the eleven that came while
    # the engine was busy waited for it and went through as one batch.
    assert calls == [1, 1, 11]


def test_with_a_batch_wait_a_lone_call_waits_for_company(deploy: object) -> None:
    handle, log = deploy(1.0)  # type: ignore[operator]

    async def run() -> list[float]:
        first = asyncio.ensure_future(score(handle, 1))
        await asyncio.sleep(0.2)  # within the first call's wait for company
        return list(await asyncio.gather(first, score(handle, 2)))

    assert asyncio.run(run()) == [1.0, 2.0]
    assert engine_calls(log) == [2]
