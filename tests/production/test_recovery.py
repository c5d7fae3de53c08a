"""A vLLM engine core killed under the Generator replica: Serve's health check finds the
replica unhealthy, replaces it, and answers come again (runs last: it restarts vLLM)."""

from __future__ import annotations

import signal
import time

import psutil
from openai import OpenAI
from ray import serve
from ray.util.state import list_actors

from serve.bench.tiny_production import APP
from tests.production.conftest import Deployed

GENERATOR = f"ServeReplica:{APP}:Generator"


def generator_replicas(dashboard: str) -> dict[str, int]:
    """Actor id -> process id of the Generator replicas that are alive."""
    alive = list_actors(
        address=dashboard,
        filters=[("class_name", "=", GENERATOR), ("state", "=", "ALIVE")],
        detail=True,
    )
    return {a.actor_id: int(a.pid) for a in alive}


def test_a_killed_engine_core_is_replaced_by_serve(production_graph: Deployed) -> None:
    client = OpenAI(base_url=f"{production_graph.url}/v1", api_key="unused", max_retries=0)
    (old_actor, old_pid), *others = generator_replicas(production_graph.ray.dashboard).items()
    assert not others
    cores = [
        p
        for p in psutil.Process(old_pid).children(recursive=True)
        if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()
    ]
    assert len(cores) == 1, [(p.pid, p.name(), p.cmdline()) for p in cores]
    cores[0].send_signal(signal.SIGKILL)

    deadline = time.monotonic() + 420
    seen: set[str] = set()
    while True:
        replicas = generator_replicas(production_graph.ray.dashboard)
        status = serve.status().applications[APP]
        seen.add(str(status.deployments["Generator"].status.value))
        if old_actor not in replicas and replicas and status.status == "RUNNING":
            break
        assert time.monotonic() < deadline, (replicas, status)
        time.sleep(1)
    # vLLM's check_health raised EngineDeadError three times in a row (every 15 s).
    assert "UNHEALTHY" in seen, seen
    assert psutil.Process(next(iter(replicas.values()))).is_running()

    completion = client.chat.completions.create(
        model=APP,
        messages=[{"role": "user", "content": "沖縄県の県庁所在地はどこですか？"}],
        max_tokens=8,
        temperature=0.0,
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 8
    assert (completion.model_extra or {})["sources"]
