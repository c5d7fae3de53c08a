"""One local Ray instance (dashboard and Serve on free loopback ports) for the
reliability suite, helpers to break it, and the table of what happened.

Run with ``make reliability``; the table is printed at the end of the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import serve
from ray.util.state import list_actors

from tests.reliability.engines import SLOW_START_ENV
from tests.support import free_port
from tests.support import wait_for_answer as answered

pytestmark = pytest.mark.reliability

API_KEY_ENV = "JARAG_RELIABILITY_API_KEY"
API_KEY = "rel-" + os.urandom(12).hex()
"""Set in this process before Ray starts, so every Ray worker inherits it."""


@dataclass
class Row:
    scenario: str
    sent: int
    succeeded: int
    shed: int
    failed: int
    recovery_s: float | None = None
    notes: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def table(self) -> str:
        header = ("scenario", "sent", "succeeded", "shed 503/429", "failed", "recovery", "notes")
        lines = [
            (
                r.scenario,
                str(r.sent),
                str(r.succeeded),
                str(r.shed),
                str(r.failed),
                "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s",
                r.notes,
            )
            for r in self.rows
        ]
        widths = [max(len(c) for c in column) for column in zip(header, *lines, strict=False)]

        def fmt(cells: tuple[str, ...]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


_REPORT_KEY = pytest.StashKey[Report]()


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> Report:
    return request.config.stash.setdefault(_REPORT_KEY, Report())


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    table = config.stash.get(_REPORT_KEY, None)
    if table is None or not table.rows:
        return
    terminalreporter.section("reliability")
    terminalreporter.write_line(table.table())
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        Path(path).write_text(table.table() + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Cluster:
    port: int
    dashboard: str
    """Address of this Ray instance's dashboard (its state API); other Ray instances
    may run on the machine, so it is always named."""
    session_dir: Path
    slow_start_file: Path

    def url(self, route_prefix: str) -> str:
        return f"http://127.0.0.1:{self.port}{route_prefix.rstrip('/')}"

    def replicas(self, app: str, deployment: str) -> list[Any]:
        """The live replica actors of ``deployment``, from Ray's state API."""
        actors: list[Any] = list_actors(
            address=self.dashboard,
            filters=[
                ("class_name", "=", f"ServeReplica:{app}:{deployment}"),
                ("state", "=", "ALIVE"),
            ],
        )
        return actors

    def kill_replica(self, app: str, deployment: str) -> str:
        """Kills one replica of ``deployment`` (ray.kill); returns its actor id."""
        actor = self.replicas(app, deployment)[0]
        ray.kill(ray.get_actor(actor.name, namespace=actor.ray_namespace), no_restart=True)
        return str(actor.actor_id)

    def count_in_logs(self, app: str, deployment: str, text: str) -> int:
        """Occurrences of ``text`` in what the live replicas of ``deployment`` wrote to
        stderr (where the project's own log records go)."""
        pids = {str(a.pid) for a in self.replicas(app, deployment)}
        logs = [
            path
            for path in (self.session_dir / "logs").glob("worker-*.err")
            if path.stem.rsplit("-", 1)[-1] in pids
        ]
        return sum(path.read_text("utf-8", "replace").count(text) for path in logs)

    def wait_for_replacement(
        self, app: str, deployment: str, killed: str, count: int, timeout_s: float = 90
    ) -> float:
        """Seconds until ``killed`` is gone and ``count`` replicas run and pass their
        health checks again."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            alive = {str(a.actor_id) for a in self.replicas(app, deployment)}
            if killed not in alive and len(alive) >= count:
                wait_until_running(app, deployment, count, timeout_s)
                return time.monotonic() - start
            time.sleep(0.25)
        raise AssertionError(f"{app}/{deployment}: replica {killed} was not replaced")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if ray.is_initialized():
        pytest.skip("the reliability suite needs its own Ray instance: run `make reliability`")
    slow_start = tmp_path_factory.mktemp("slow-start") / "seconds"
    os.environ[API_KEY_ENV] = API_KEY
    os.environ[SLOW_START_ENV] = str(slow_start)
    # Logical CPUs beyond the machine's: Ray schedules by declared resources.
    context = ray.init(
        num_cpus=8,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        log_to_driver=False,
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield Cluster(
            port,
            f"http://{context.dashboard_url}",
            Path(context.address_info["session_dir"]),
            slow_start,
        )
    finally:
        serve.shutdown()
        ray.shutdown()


AUTH = {"Authorization": f"Bearer {API_KEY}"}


def ask(text: str, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def running_replicas(app: str, deployment: str) -> int:
    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


def wait_until_running(app: str, deployment: str, count: int, timeout_s: float = 90) -> float:
    """Seconds until ``deployment`` has ``count`` healthy running replicas again."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        deployment_status = serve.status().applications[app].deployments[deployment]
        if deployment_status.status == "HEALTHY" and running_replicas(app, deployment) >= count:
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"{app}/{deployment} did not get {count} running replicas back")


def wait_for_answer(url: str, body: dict[str, object], timeout_s: float = 90) -> float:
    """Seconds until a chat request is answered 200 without degradation."""
    return answered(url, body, timeout_s, AUTH)
