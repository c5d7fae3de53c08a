"""Helpers shared by the cluster suite."""

from __future__ import annotations

from typing import Any

from serve.bench.autoscale import replica_actors
from serve.ops.local_cluster import LocalCluster
from tests.support import wait_for_answer as answered

DEPLOYMENTS = ("Ingress", "Embedder", "Retriever", "Reranker", "Generator")
ASK = {"messages": [{"role": "user", "content": "香川県の県庁所在地はどこですか？"}]}


def gpu_nodes(cluster: LocalCluster) -> dict[str, float]:
    """Every alive node's GPUs (0 for the head), by node id, from Ray's state API."""
    from ray.util.state import list_nodes

    return {
        str(n.node_id): float(n.resources_total.get("GPU", 0))
        for n in list_nodes(address=cluster.dashboard_url)
        if n.state == "ALIVE"
    }


def replicas(cluster: LocalCluster, app: str) -> dict[str, list[Any]]:
    return {name: replica_actors(cluster.dashboard_url, app, name) for name in DEPLOYMENTS}


def gpu_share_by_node(cluster: LocalCluster, app: str) -> dict[str, float]:
    """The GPU fractions the live replicas of ``app`` hold, summed per node."""
    shares: dict[str, float] = {}
    for actors in replicas(cluster, app).values():
        for actor in actors:
            gpu = float((actor.required_resources or {}).get("GPU", 0))
            shares[str(actor.node_id)] = shares.get(str(actor.node_id), 0.0) + gpu
    return shares


def wait_for_answer(url: str, timeout_s: float) -> float:
    """Seconds until a chat request to the graph at ``url`` is answered 200 without a
    degraded stage."""
    return answered(f"{url}/v1/chat/completions", ASK, timeout_s)
