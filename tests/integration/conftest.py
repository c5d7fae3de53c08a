"""One real local Ray instance (with Serve on a free loopback port) per test session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
from ray import serve

from serve.app import build_app
from tests.support import free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ServeCluster:
    port: int

    def url(self, route_prefix: str) -> str:
        return f"http://127.0.0.1:{self.port}{route_prefix.rstrip('/')}"


@pytest.fixture(scope="session")
def serve_cluster() -> Iterator[ServeCluster]:
    # Logical CPUs and GPUs beyond the machine's: Ray schedules by declared resources.
    ray.init(num_cpus=8, num_gpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield ServeCluster(port)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def demo_graph(serve_cluster: ServeCluster, demo_index: Path) -> Iterator[str]:
    """The demo graph deployed with the built-in stages; yields its base URL."""
    serve.run(build_app({"index": {"path": str(demo_index)}}), name="demo", route_prefix="/demo")
    try:
        yield serve_cluster.url("/demo")
    finally:
        serve.delete("demo")
