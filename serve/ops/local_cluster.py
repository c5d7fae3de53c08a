"""A Ray cluster of several nodes on one machine: a head without GPUs and worker nodes
that declare GPUs, as a KubeRay GPU worker group would have them.

The multi-node tests and ``jarag bench autoscale`` run the graph on it. Ray schedules
by declared resources, so the workers' GPUs need not exist: fractional ``num_gpus``
place replicas exactly as on real GPU nodes (the built-in stages never touch a GPU).

The cluster keeps to itself: its session files and its address file live in a private
temporary directory (``RAY_TMPDIR``), so a plain ``ray.init()`` elsewhere on the machine
never joins it, and every port (GCS, dashboard, metrics, HTTP) is a free one on
loopback. ``shutdown`` stops every process it started.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HEAD_START_ATTEMPTS = 2
"""Ray gives a starting node's raylet 30 s to register with the GCS; once, on a loaded
2-CPU machine, the head missed that and the whole cluster suite failed at setup. A
second attempt starts afresh."""

FAST_FAILURE_DETECTION: dict[str, Any] = {
    # A node that stops answering is declared dead after 3 missed 1 s health checks
    # (Ray's default: 5 missed checks 3 s apart).
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
    # Metrics reach the node's Prometheus endpoint within about a second.
    "metrics_report_interval_ms": 1000,
}


@dataclass(frozen=True)
class ClusterShape:
    """The nodes: one head (no GPU) and ``gpu_workers`` identical worker nodes."""

    head_cpus: float = 2
    gpu_workers: int = 3
    worker_cpus: float = 2
    worker_gpus: int = 1
    object_store_bytes: int = 100 * 1024**2

    def describe(self) -> str:
        return (
            f"head: {self.head_cpus:g} CPU, no GPU; {self.gpu_workers} worker node(s): "
            f"{self.worker_cpus:g} CPU and {self.worker_gpus} GPU (declared) each"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalCluster:
    """A running local cluster with Ray Serve started on it (its proxy on the head)."""

    shape: ClusterShape
    cluster: Any
    """``ray.cluster_utils.Cluster``."""
    http_port: int
    dashboard_port: int
    temp_dir: Path
    workers: list[Any] = field(default_factory=list)
    """The worker nodes (``ray._private.node.Node``), in the order they were added."""

    @property
    def address(self) -> str:
        """The GCS address, for ``ray.init(address=...)``."""
        return str(self.cluster.address)

    @property
    def dashboard_url(self) -> str:
        """The dashboard (and Ray's state API, and Serve's REST API for ``serve deploy``)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def url(self, route_prefix: str = "/") -> str:
        return f"http://127.0.0.1:{self.http_port}{route_prefix.rstrip('/')}"

    def add_worker(self) -> Any:
        node = self.cluster.add_node(**_worker_args(self.shape))
        self.workers.append(node)
        return node

    def remove_worker(self, node_id: str, graceful: bool = False) -> None:
        """Kills the worker node ``node_id`` and every process on it (``graceful=False``:
        as when a machine or pod dies)."""
        node = next(n for n in self.workers if n.node_id == node_id)
        self.cluster.remove_node(node, allow_graceful=graceful)
        self.workers.remove(node)

    def metrics_ports(self) -> dict[str, int]:
        """Each alive node's Prometheus endpoint port, by node id (from ``ray.nodes()``)."""
        import ray

        return {
            n["NodeID"]: int(n["MetricsExportPort"])
            for n in ray.nodes()
            if n.get("Alive") and n.get("MetricsExportPort")
        }


def _worker_args(shape: ClusterShape) -> dict[str, Any]:
    return {
        "num_cpus": shape.worker_cpus,
        "num_gpus": shape.worker_gpus,
        "object_store_memory": shape.object_store_bytes,
        "metrics_export_port": free_port(),
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Sets environment variables for the block, then restores what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def local_cluster(
    shape: ClusterShape = ClusterShape(), env: Mapping[str, str] | None = None
) -> Iterator[LocalCluster]:
    """Starts the nodes, connects this process (``ray.init``) and starts Serve with one
    HTTP proxy on the head, on a free loopback port; stops all of it on exit.

    ``env`` is set for every Ray process of the cluster (they inherit this process's
    environment while the nodes start).
    """
    import ray
    from ray import serve

    if ray.is_initialized():
        raise RuntimeError("this process is already connected to a Ray cluster")
    cluster = None
    temp_dir = None
    started = time.monotonic()
    try:
        dashboard_port = free_port()
        cluster, temp_dir = _start_head(
            {
                "num_cpus": shape.head_cpus,
                "num_gpus": 0,
                "object_store_memory": shape.object_store_bytes,
                "include_dashboard": True,
                "dashboard_host": "127.0.0.1",
                "dashboard_port": dashboard_port,
                "metrics_export_port": free_port(),
                "_system_config": FAST_FAILURE_DETECTION,
            },
            env or {},
        )
        with environment({**(env or {}), "RAY_TMPDIR": str(temp_dir)}):
            local = LocalCluster(shape, cluster, free_port(), dashboard_port, temp_dir)
            for _ in range(shape.gpu_workers):
                local.add_worker()
            cluster.wait_for_nodes(timeout=120)
            ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
            serve.start(
                proxy_location="HeadOnly",
                http_options={"host": "127.0.0.1", "port": local.http_port},
            )
            _wait_for_dashboard(local.dashboard_url, deadline=started + 180)
            try:
                yield local
            finally:
                try:
                    serve.shutdown()
                finally:
                    ray.shutdown()
    finally:
        if cluster is not None:
            with environment({"RAY_TMPDIR": str(temp_dir)}):
                cluster.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _start_head(head_node_args: dict[str, Any], env: Mapping[str, str]) -> tuple[Any, Path]:
    """A ``Cluster`` with its head node started, and the private temporary directory its
    processes use. A start that times out is stopped (every process it left) and
    tried again, up to HEAD_START_ATTEMPTS times."""
    from ray.cluster_utils import Cluster

    for attempt in range(1, HEAD_START_ATTEMPTS + 1):
        # Unix socket paths must stay short: a short directory directly under /tmp.
        temp_dir = Path(tempfile.mkdtemp(prefix="jrc-", dir="/tmp"))
        try:
            with environment({**env, "RAY_TMPDIR": str(temp_dir)}):
                return Cluster(initialize_head=True, head_node_args=head_node_args), temp_dir
        except Exception as error:
            _kill_processes_naming(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)
            if attempt == HEAD_START_ATTEMPTS or "timed out during startup" not in str(error):
                raise
            logger.warning("the head node did not start (%s); starting it again", error)
    raise AssertionError("unreachable")


def _kill_processes_naming(directory: Path) -> None:
    """Kills every process whose command line names ``directory``: what a failed node
    start left running (its GCS, raylet, dashboard...). Reads /proc (Linux); elsewhere
    it finds none, and Ray stops them when this process exits."""
    marker = str(directory).encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _wait_for_dashboard(url: str, deadline: float) -> None:
    """The dashboard serves Ray's state API and Serve's REST API (``serve deploy``)."""
    import urllib.error
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Ray dashboard at {url} did not come up")
        time.sleep(0.5)
