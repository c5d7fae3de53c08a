"""The graph over several nodes with the production resource shape: replicas placed by
their GPU fractions, the Embedder and Reranker scaled up across nodes by load and back
down after it, and a worker node lost under load.

The stages are the built-in ones; the Embedder and Reranker take a fixed time per
item (``serve/bench/paced_engines.py``) so that a replica's capacity is small and known.
The resource shape (fractional GPUs, autoscaling, queue limits) is serve_config.yaml's,
with a quarter CPU per replica and the scaling delays of a few seconds.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import serve

from deployments.retriever.config import IndexConfig
from serve.app import build_graph
from serve.bench.autoscale import (
    QUICK_DELAYS,
    ClosedLoopLoad,
    production_options,
    running_replicas,
    wait_for_replicas,
)
from serve.bench.paced_engines import PacedEmbedder, PacedReranker
from serve.config import AppConfig
from serve.ops.local_cluster import LocalCluster
from tests.cluster.support import (
    DEPLOYMENTS,
    gpu_nodes,
    gpu_share_by_node,
    replicas,
    wait_for_answer,
)
from tests.support import REPO

pytestmark = pytest.mark.cluster

APP = "multinode"
SCALED = ("Embedder", "Reranker")
SCALING = {"target_ongoing_requests": 1, "max_replicas": 3, **QUICK_DELAYS}
"""Each replica of the two should hold one request: 2 in flight per stage make 2 replicas."""
RECOVERY_S = 60.0
"""A lost worker node's replicas run elsewhere and the endpoint answers within this."""


PER_NODE = 2
"""Ray's SPREAD placement of a deployment's replicas is a preference: three replicas with
0.1 GPU each may all fit on one node. The test caps them at two per node
(``max_replicas_per_node``), so that scaling to three must use a second node."""


@pytest.fixture(scope="module")
def options() -> dict[str, dict[str, Any]]:
    options = production_options(
        REPO / "serve_config.yaml", autoscaling={name: SCALING for name in SCALED}
    )
    for name in SCALED:
        options[name]["max_replicas_per_node"] = PER_NODE
    return options


@pytest.fixture(scope="module")
def graph(
    cluster: LocalCluster, demo_index: Path, options: dict[str, dict[str, Any]]
) -> Iterator[str]:
    engines: Any = {
        "embedder": functools.partial(PacedEmbedder, seconds_per_text=0.2),
        "reranker": functools.partial(PacedReranker, seconds_per_request=0.2),
    }
    config = AppConfig(index=IndexConfig(path=str(demo_index)))
    serve.run(
        build_graph(config, engines=engines, options=options), name=APP, route_prefix=f"/{APP}"
    )
    try:
        minimum = {n: options[n]["autoscaling_config"]["min_replicas"] for n in DEPLOYMENTS}
        wait_for_replicas(APP, lambda c: all(c[n] == minimum[n] for n in DEPLOYMENTS), 120)
        yield cluster.url(f"/{APP}")
    finally:
        serve.delete(APP)


def share(options: dict[str, dict[str, Any]], deployment: str) -> float:
    return float(options[deployment]["ray_actor_options"].get("num_gpus", 0))


def test_replicas_land_on_nodes_by_their_gpu_fraction(
    graph: str, cluster: LocalCluster, options: dict[str, dict[str, Any]]
) -> None:
    nodes = gpu_nodes(cluster)
    assert sorted(nodes.values()) == [0.0, 1.0, 1.0, 1.0]
    placed = replicas(cluster, APP)
    for deployment, actors in placed.items():
        for actor in actors:
            wanted = share(options, deployment)
            assert float((actor.required_resources or {}).get("GPU", 0)) == wanted
            if wanted:  # a GPU stage never lands on the head, which has no GPU
                assert nodes[str(actor.node_id)] >= 1, (deployment, actor.node_id)
    for node, used in gpu_share_by_node(cluster, APP).items():
        assert used <= nodes[node] + 1e-6, (node, used)
    # Ray accounts the fractions: what is left of the three GPUs is what they do not hold.
    held = sum(share(options, d) * len(a) for d, a in placed.items())
    assert held == pytest.approx(0.1 + 0.1 + 0.7)
    assert ray.available_resources().get("GPU", 0) == pytest.approx(3 - held)
    # And each replica sees the share Ray gave it, on one GPU of its node.
    for deployment, handle_name in (("Generator", "Generator"), ("Embedder", "Embedder")):
        handle = serve.get_deployment_handle(handle_name, app_name=APP)
        placement = handle.describe.remote().result(timeout_s=60)["placement"]
        assert placement["resources"]["GPU"] == pytest.approx(share(options, deployment))
        assert len(placement["gpu_ids"]) == 1
        assert placement["node_id"] in {str(a.node_id) for a in placed[deployment]}


def test_load_scales_embedder_and_reranker_across_nodes_and_back(
    graph: str, cluster: LocalCluster, options: dict[str, dict[str, Any]]
) -> None:
    nodes = gpu_nodes(cluster)
    load = ClosedLoopLoad(f"{graph}/v1/chat/completions", max_workers=6, max_requests=3000)
    with load.running():
        load.set_concurrency(6)
        peak = wait_for_replicas(APP, lambda c: all(c[n] >= 3 for n in SCALED), timeout_s=120)
        placed = replicas(cluster, APP)
        spread = {name: {str(a.node_id) for a in placed[name]} for name in SCALED}
        shares = gpu_share_by_node(cluster, APP)
        load.set_concurrency(0)
    stopped = time.monotonic()
    settled = wait_for_replicas(APP, lambda c: all(c[n] == 1 for n in SCALED), timeout_s=90)
    scale_down_s = time.monotonic() - stopped
    print(f"peak {peak}; replicas on nodes {spread}; back to {settled} in {scale_down_s:.1f} s")
    for name in SCALED:
        assert len(spread[name]) > 1, f"{name} replicas all on one node: {spread[name]}"
        assert all(nodes[node] >= 1 for node in spread[name])
        per_node = [str(a.node_id) for a in placed[name]]
        assert max(per_node.count(node) for node in per_node) <= PER_NODE
    for node, used in shares.items():
        assert used <= nodes[node] + 1e-6
    assert running_replicas(APP)["Generator"] == 1  # its target is production's: not driven
    statuses = {s.status for s in load.samples}
    assert statuses == {200}, statuses
    assert len(load.samples) > 20


def test_a_worker_node_lost_under_load_is_replaced_on_the_others(
    graph: str, cluster: LocalCluster, options: dict[str, dict[str, Any]]
) -> None:
    (generator,) = replicas(cluster, APP)["Generator"]
    lost = str(generator.node_id)
    on_lost = {
        name: sum(str(a.node_id) == lost for a in actors)
        for name, actors in replicas(cluster, APP).items()
    }
    load = ClosedLoopLoad(
        f"{graph}/v1/chat/completions", max_workers=2, max_requests=2000, timeout_s=30
    )
    try:
        with load.running():
            load.set_concurrency(2)
            time.sleep(2)
            removed = time.monotonic()
            cluster.remove_worker(lost, graceful=False)
            recovered_s = wait_for_answer(graph, RECOVERY_S)
            minimum = {n: options[n]["autoscaling_config"]["min_replicas"] for n in DEPLOYMENTS}
            wait_for_replicas(
                APP,
                lambda c: all(c[n] >= minimum[n] for n in DEPLOYMENTS),
                timeout_s=max(1.0, RECOVERY_S - (time.monotonic() - removed)),
            )
            whole = time.monotonic()
            # Requests begun before recovery may still be draining: wait (bounded) for a
            # few that start and finish after it.
            while len(load.between(whole, math.inf)) < 3 and time.monotonic() - whole < 30:
                time.sleep(0.5)
        after = replicas(cluster, APP)
        nodes = gpu_nodes(cluster)
        # From a few seconds before: the requests in flight when the node went are counted.
        outage = load.between(removed - 3, math.inf)
        slowest = max(s.seconds for s in outage)
        print(
            f"removed node {lost[:8]} (replicas there: {on_lost}); answering again after "
            f"{recovered_s:.1f} s; from 3 s before on: {len(outage)} requests, "
            f"{sum(s.status == 200 and not s.degraded for s in outage)} full answers, "
            f"{sum(s.degraded for s in outage)} degraded, "
            f"{sum(s.status != 200 for s in outage)} not 200; slowest {slowest:.1f} s"
        )
        assert recovered_s < RECOVERY_S
        assert lost not in nodes
        for name, actors in after.items():
            assert actors, f"no live {name} replica"
            assert all(str(a.node_id) in nodes for a in actors), name
        (replacement,) = after["Generator"]
        assert str(replacement.node_id) != lost and nodes[str(replacement.node_id)] >= 1
        # Once recovered, the graph answers in full again.
        last = load.between(whole, math.inf)
        assert last and all(s.status == 200 and not s.degraded for s in last)
    finally:
        cluster.add_worker()  # the next modules find the cluster whole again
