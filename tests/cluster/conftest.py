"""One multi-node Ray cluster on this machine for the whole cluster suite.

It needs a Ray instance of its own, so it runs as its own pytest invocation
(``make cluster-test``), never in the process of the integration suite. A head
without GPUs and three worker nodes that declare one GPU each, with Serve's HTTP
proxy on the head on a free loopback port.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import ray

from serve.ops.local_cluster import ClusterShape, LocalCluster, local_cluster

pytestmark = pytest.mark.cluster

SHAPE = ClusterShape(head_cpus=2, gpu_workers=3, worker_cpus=2, worker_gpus=1)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    if ray.is_initialized():
        pytest.skip("the cluster suite needs its own Ray cluster: run `make cluster-test`")
    with local_cluster(SHAPE) as running:
        yield running
