"""Batcher in a real Serve replica: the calls that arrive while the engine is busy form
the next batch, within max_batch_size as counted, settings change live, an engine error
reaches only its batch's callers, and two batchers of one replica keep their own
queues."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from ray import serve

from deployments.batching import Batcher, BatchingSettings, in_serve_replica
from tests.integration.conftest import ServeCluster

pytestmark = pytest.mark.integration
HOLD_S = 0.3


class TwoBatchers:
    """A replica with two batchers over engines that write down every call they get."""

    def __init__(self) -> None:
        self.calls: dict[str, list[list[int]]] = {"items": [], "pairs": []}
        self.started = threading.Event()
        self.items: Batcher[int, int] = Batcher(
            lambda batch: self._run("items", batch), BatchingSettings(max_batch_size=32)
        )
        # Each call counts as two items: a batch of max_batch_size 4 holds two calls.
        self.pairs: Batcher[int, int] = Batcher(
            lambda batch: self._run("pairs", batch),
            BatchingSettings(max_batch_size=4),
            size_of=lambda batch: 2 * len(batch),
        )

    def _run(self, name: str, batch: list[int]) -> list[int]:
        self.calls[name].append(list(batch))
        if any(n < 0 for n in batch):
            raise ValueError("negative item")
        if batch == [0]:  # the call that holds the engine while the others arrive
            time.sleep(HOLD_S)
        return [n * 2 for n in batch]

    async def submit(self, name: str, item: int) -> int:
        batcher = self.items if name == "items" else self.pairs
        return await batcher.submit(item)

    async def configure(self, name: str, values: dict[str, Any]) -> None:
        batcher = self.items if name == "items" else self.pairs
        batcher.configure(BatchingSettings.model_validate(values))

    async def recorded(self) -> dict[str, Any]:
        calls = {name: list(calls) for name, calls in self.calls.items()}
        for batches in self.calls.values():
            batches.clear()
        return {"calls": calls, "in_replica": in_serve_replica()}


@pytest.fixture(scope="module")
def replica(serve_cluster: ServeCluster) -> Any:
    app = serve.deployment(
        TwoBatchers, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0}
    ).bind()
    handle = serve.run(app, name="batcher-test", route_prefix=None)
    yield handle
    serve.delete("batcher-test")


def burst(handle: Any, name: str, items: list[int]) -> list[Any]:
    """A call of 0 that holds the engine, then ``items`` while it is held."""
    first = handle.submit.remote(name, 0)
    time.sleep(HOLD_S / 3)
    rest = [handle.submit.remote(name, n) for n in items]
    results = []
    for response in [first, *rest]:
        try:
            results.append(response.result(timeout_s=30))
        except Exception as error:
            results.append(error)
    return results


def test_calls_arriving_while_the_engine_is_busy_form_the_next_batch(replica: Any) -> None:
    replica.recorded.remote().result()
    assert burst(replica, "items", [1, 2, 3, 4, 5, 6]) == [0, 2, 4, 6, 8, 10, 12]
    recorded = replica.recorded.remote().result()
    assert recorded["in_replica"]
    assert recorded["calls"]["items"][0] == [0]
    assert sorted(recorded["calls"]["items"][1]) == [1, 2, 3, 4, 5, 6]


def test_batches_hold_at_most_max_batch_size_items_as_counted(replica: Any) -> None:
    replica.recorded.remote().result()
    assert burst(replica, "pairs", [1, 2, 3, 4, 5]) == [0, 2, 4, 6, 8, 10]
    batches = replica.recorded.remote().result()["calls"]["pairs"]
    assert all(len(batch) <= 2 for batch in batches)
    assert sorted(n for batch in batches for n in batch) == [0, 1, 2, 3, 4, 5]
    assert any(len(batch) == 2 for batch in batches)


def test_settings_change_on_the_running_replica(replica: Any) -> None:
    replica.configure.remote("items", {"max_batch_size": 3}).result()
    replica.recorded.remote().result()
    burst(replica, "items", [1, 2, 3, 4, 5, 6])
    batches = replica.recorded.remote().result()["calls"]["items"]
    assert max(len(batch) for batch in batches) == 3
    replica.configure.remote("items", {"batching": False}).result()
    burst(replica, "items", [1, 2, 3])
    batches = replica.recorded.remote().result()["calls"]["items"]
    assert all(len(batch) == 1 for batch in batches)
    replica.configure.remote("items", {"max_batch_size": 32}).result()


def test_an_engine_error_fails_its_batch_only(replica: Any) -> None:
    replica.recorded.remote().result()
    results = burst(replica, "items", [1, -1])
    assert results[0] == 0
    assert all(isinstance(r, Exception) and "negative item" in str(r) for r in results[1:])
    assert replica.submit.remote("items", 5).result(timeout_s=30) == 10
