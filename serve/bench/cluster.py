"""A private local Ray instance for the benchmarks, with Serve on a free loopback port.

Ray Serve reads its performance settings from environment variables when its
processes start, so they are set before Ray starts and every process of this
instance (controller, proxy, replicas) has them. The instance is started with
``address="local"``: a Ray cluster another user runs on the same machine is never
joined, and it is shut down (its processes only) when the benchmark ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from serve.bench.processes import our_processes
from serve.ops.local_cluster import environment

SERVE_SETTINGS: dict[str, str] = {
    # Ray Serve's throughput-optimised mode (Ray >= 2.50): the replica runs user code
    # and its handles' router on its own event loop instead of one thread each,
    # requests between deployments go over gRPC, access logs are buffered, and the
    # ingress replica also serves HTTP itself ("direct ingress").
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Direct ingress holds a stopping ingress replica open 30 s so that a load
    # balancer can deregister it; no balancer stands in front of a benchmark.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
}
"""What ``make bench`` runs the graph with; docs/performance.md explains it."""

DIRECT_INGRESS_PORTS = range(30000, 31001)
"""Ray Serve's default port range for a direct-ingress replica's own HTTP server."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServeInstance:
    http_port: int
    settings: dict[str, str]
    """The RAY_SERVE_* environment the instance's processes started with."""


@contextlib.asynccontextmanager
async def serve_instance(settings: Mapping[str, str] | None = None) -> AsyncIterator[ServeInstance]:
    """A new local Ray instance with Serve's proxy on a free loopback port.

    Entered in the event loop that uses its handles: Serve is shut down from that
    loop, which closes the handles' routers there (a synchronous shutdown from inside
    the loop can only close them best effort, and prints tracebacks)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        raise RuntimeError("the benchmark starts its own Ray instance; call it without one")
    applied = dict(SERVE_SETTINGS if settings is None else settings)
    with environment(applied):
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=False,
            logging_level="WARNING",
            configure_logging=False,
        )
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            yield ServeInstance(port, _serve_environment())
        finally:
            await serve.shutdown_async()
            ray.shutdown()


def _serve_environment() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("RAY_SERVE_")}


def run_all(
    apps: Mapping[str, Any], ingress_app: str | None, timeout_s: float = 300
) -> dict[str, Any]:
    """Every application started at once (their replicas start in parallel); returns
    each one's ingress handle. ``ingress_app`` gets the route ``/``, the others none.
    A replica that cannot be placed or started fails here, with Serve's own message,
    instead of leaving the benchmark waiting for ever."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    targets = [
        serve.RunTarget(app, name=name, route_prefix="/" if name == ingress_app else None)
        for name, app in apps.items()
    ]
    handles = serve.run_many(targets, wait_for_applications_running=False)
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = serve.status().applications
        pending = {n: statuses[n] for n in apps if statuses[n].status != ApplicationStatus.RUNNING}
        failed = [n for n, a in pending.items() if a.status == ApplicationStatus.DEPLOY_FAILED]
        if not pending:
            return dict(zip(apps, handles, strict=True))
        if failed or time.monotonic() > deadline:
            detail = "; ".join(
                f"{name}: {app.status} {app.message} "
                + " ".join(f"[{d}: {s.status} {s.message}]" for d, s in app.deployments.items())
                for name, app in pending.items()
            )
            raise RuntimeError(f"the benchmark's applications did not start: {detail}")
        time.sleep(0.5)


def direct_ingress_url(deployment: str = "Ingress", timeout_s: float = 30) -> str | None:
    """The URL of the ingress replica's own HTTP server when direct ingress is on.

    Ray 2.60 has no public API that names the port it gave the replica; the replica
    is a process of this instance, so its listening socket in Serve's port range
    says it.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in our_processes().get(deployment, []):
            try:
                sockets = process.net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            for s in sockets:
                if s.status == psutil.CONN_LISTEN and s.laddr.port in DIRECT_INGRESS_PORTS:
                    return f"http://127.0.0.1:{s.laddr.port}"
        if os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") != "1" and (
            os.environ.get("RAY_SERVE_ENABLE_DIRECT_INGRESS") != "1"
        ):
            return None
        time.sleep(0.2)
    return None
