"""Batcher, the one batching helper of the stages, outside a Serve replica (the stages
in one process): every call an engine call of its own, batching off one at a time,
errors; and BatchGate's rule for which calls skip the batch queue. Batches formed in a
replica: tests/integration/test_batcher.py."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from deployments.batching import (
    Batcher,
    BatchGate,
    BatchingSettings,
    in_serve_replica,
    with_batching,
)


class RecordingEngine:
    """Doubles numbers; records every engine call, can be held busy, can fail."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def run(self, items: list[int]) -> list[int]:
        with self._lock:
            self.calls.append(list(items))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if not self.release.wait(10):
                raise TimeoutError("the test never released the engine")
            if any(item < 0 for item in items):
                raise ValueError("negative item")
            time.sleep(0.001)
            return [item * 2 for item in items]
        finally:
            with self._lock:
                self.running -= 1


def settings(**values: object) -> BatchingSettings:
    return BatchingSettings.model_validate(values)


async def until(condition: object, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.001)


async def busy_then_burst(batcher: Batcher[int, int], engine: RecordingEngine) -> list[int]:
    """One call holds the engine while six more arrive; then the engine is released."""
    engine.release.clear()
    first = asyncio.ensure_future(batcher.submit(1))
    await until(lambda: engine.running == 1)
    rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(2, 8)]
    await asyncio.sleep(0.05)
    engine.release.set()
    return await asyncio.gather(first, *rest)


def test_outside_a_replica_every_call_is_an_engine_call_of_its_own() -> None:
    engine = RecordingEngine()

    async def scenario() -> list[int]:
        assert not in_serve_replica()
        batcher = Batcher(engine.run, settings(), size_of=len)
        lone = [await batcher.submit(n) for n in (3, 4)]
        return lone + await busy_then_burst(batcher, engine)

    assert asyncio.run(scenario()) == [6, 8, 2, 4, 6, 8, 10, 12, 14]
    assert all(len(call) == 1 for call in engine.calls)
    # Concurrent calls run side by side in worker threads, as engines in one process do.
    assert engine.most_running > 1


def test_with_batching_off_every_call_runs_alone_one_at_a_time() -> None:
    engine = RecordingEngine()

    async def scenario() -> list[int]:
        return await busy_then_burst(Batcher(engine.run, settings(batching=False)), engine)

    assert asyncio.run(scenario()) == [2, 4, 6, 8, 10, 12, 14]
    assert all(len(call) == 1 for call in engine.calls)
    assert engine.most_running == 1


def test_settings_change_live_and_only_batching_settings_are_accepted() -> None:
    engine = RecordingEngine()

    async def scenario() -> list[int]:
        batcher = Batcher(engine.run, settings())
        batcher.configure(with_batching(settings(), {"batching": False}))
        return await busy_then_burst(batcher, engine)

    assert asyncio.run(scenario()) == [2, 4, 6, 8, 10, 12, 14]
    assert engine.most_running == 1
    assert with_batching(settings(), {"max_batch_size": 3}).max_batch_size == 3
    with pytest.raises(ValueError, match="user_config may only set"):
        with_batching(settings(), {"top_k": 3})


def test_an_engine_error_reaches_its_caller_and_the_batcher_goes_on() -> None:
    engine = RecordingEngine()

    async def scenario() -> tuple[tuple[int | BaseException, int | BaseException], int]:
        batcher = Batcher(engine.run, settings())
        results = await asyncio.gather(
            batcher.submit(1), batcher.submit(-3), return_exceptions=True
        )
        return results, await batcher.submit(5)

    results, after = asyncio.run(scenario())
    assert results[0] == 2 and isinstance(results[1], ValueError)
    assert after == 10


def test_the_gate_lets_a_call_skip_the_queue_only_when_nothing_runs_or_waits() -> None:
    async def scenario() -> list[bool]:
        gate = BatchGate()
        seen = [gate.alone]
        with gate.running():
            seen.append(gate.alone)
        seen.append(gate.alone)
        async with gate.queued():
            seen.append(gate.alone)
        gate.batch_wait_timeout_s = 0.01
        seen.append(gate.alone)  # a wait for company is configured: every call queues
        return seen

    assert asyncio.run(scenario()) == [True, False, True, False, False]


def test_a_queued_call_waits_until_the_running_batch_ends() -> None:
    async def scenario() -> list[str]:
        gate = BatchGate()
        order: list[str] = []

        async def queued() -> None:
            async with gate.queued():
                order.append("queued call enters the queue")

        with gate.running():
            task = asyncio.ensure_future(queued())
            await asyncio.sleep(0.01)
            order.append("batch ends")
        await task
        return order

    assert asyncio.run(scenario()) == ["batch ends", "queued call enters the queue"]
