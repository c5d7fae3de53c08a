"""Replica placement, computed before anything is deployed: what each replica of a
Serve config asks of the cluster, and how Ray would pack those requests onto nodes
(CPUs, memory and custom resources per node, fractional GPUs per physical GPU,
placement-group bundles per their strategy). The pre-flight check and the KubeRay
sizing both use it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from serve.app import DEPLOYMENT_DEFAULTS

EPSILON = 1e-6
"""Slack in resource comparisons (Ray's fractions are floats)."""
_GIB = 1024**3


@dataclass(frozen=True)
class ReplicaRequest:
    """What one replica asks of the cluster: its bundles (one, without a placement group)."""

    deployment: str
    number: int
    bundles: tuple[dict[str, float], ...]
    strategy: str = "PACK"

    def total(self, resource: str) -> float:
        return sum(b.get(resource, 0.0) for b in self.bundles)


@dataclass
class Node:
    """A node's free capacity: scalar resources, and each GPU's free fraction."""

    node_id: str
    address: str
    resources: dict[str, float]
    gpus: list[float]

    @classmethod
    def from_totals(cls, node_id: str, address: str, totals: dict[str, float]) -> Node:
        scalars = {
            k: float(v) for k, v in totals.items() if k != "GPU" and not k.startswith("node:")
        }
        return cls(node_id, address, scalars, [1.0] * round(totals.get("GPU", 0)))

    def copy(self) -> Node:
        return Node(self.node_id, self.address, dict(self.resources), list(self.gpus))


@dataclass(frozen=True)
class BundlePlacement:
    node: str
    gpu_ids: tuple[int, ...]


@dataclass
class Packing:
    placed: list[tuple[ReplicaRequest, list[BundlePlacement]]] = field(default_factory=list)
    unplaced: list[tuple[ReplicaRequest, str]] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.unplaced


# --- what the config asks for -------------------------------------------------------------


def deployment_options(app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each deployment's options as Serve will apply them: the config's entry over the
    application's defaults (an entry's ray_actor_options replaces the default's whole)."""
    options = {name: dict(defaults) for name, defaults in DEPLOYMENT_DEFAULTS.items()}
    for entry in app.get("deployments") or []:
        name = entry.get("name")
        if name in options:
            options[name] = {**options[name], **{k: v for k, v in entry.items() if k != "name"}}
    return options


def replica_count(options: dict[str, Any], at: Literal["start", "max"]) -> int:
    """Replicas at deploy time (num_replicas, else autoscaling initial or min, at least one
    so that the stage can serve) or at the autoscaling maximum."""
    autoscaling = options.get("autoscaling_config")
    replicas = options.get("num_replicas")
    if replicas == "auto" and not autoscaling:
        autoscaling = {"min_replicas": 1, "max_replicas": 100}
    if autoscaling:
        minimum = int(autoscaling.get("min_replicas", 1))
        if at == "max":
            return int(autoscaling.get("max_replicas", max(minimum, 1)))
        initial = autoscaling.get("initial_replicas")
        return max(int(initial if initial is not None else minimum), 1)
    return int(replicas) if isinstance(replicas, int) else 1


def actor_resources(actor: dict[str, Any]) -> dict[str, float]:
    """Logical resources of a replica actor (Serve's default is one CPU)."""
    resources: dict[str, float] = {
        "CPU": float(actor["num_cpus"]) if actor.get("num_cpus") is not None else 1.0
    }
    if actor.get("num_gpus"):
        resources["GPU"] = float(actor["num_gpus"])
    if actor.get("memory"):
        resources["memory"] = float(actor["memory"])
    if actor.get("accelerator_type"):
        resources[f"accelerator_type:{actor['accelerator_type']}"] = 0.001
    for name, amount in (actor.get("resources") or {}).items():
        resources[name] = float(amount)
    return resources


def replica_requests(
    options: dict[str, dict[str, Any]], at: Literal["start", "max"] = "start"
) -> list[ReplicaRequest]:
    requests = []
    for name, opts in options.items():
        bundles = opts.get("placement_group_bundles")
        if bundles:
            shape = tuple({k: float(v) for k, v in b.items()} for b in bundles)
            strategy = str(opts.get("placement_group_strategy") or "PACK")
        else:
            shape = (actor_resources(opts.get("ray_actor_options") or {}),)
            strategy = "PACK"
        for number in range(replica_count(opts, at)):
            requests.append(ReplicaRequest(name, number + 1, shape, strategy))
    return requests


# --- packing ------------------------------------------------------------------------------


def pack(requests: Sequence[ReplicaRequest], nodes: Sequence[Node]) -> Packing:
    """Place replicas first-fit-decreasing (largest GPU demand first), fractional GPUs on
    the fullest GPU they fit on, as Ray's scheduler does. Nodes are not modified."""
    free = [n.copy() for n in nodes]
    packing = Packing()
    order = sorted(requests, key=lambda r: (-r.total("GPU"), -r.total("CPU"), r.deployment))
    for request in order:
        placement = _place_replica(request, free)
        if placement is None:
            packing.unplaced.append((request, _shortfall(request, nodes)))
        else:
            packing.placed.append((request, placement))
    return packing


def _place_replica(request: ReplicaRequest, nodes: list[Node]) -> list[BundlePlacement] | None:
    together = request.strategy in ("PACK", "STRICT_PACK")
    if together:
        for node in nodes:
            trial = node.copy()
            taken = [_take(trial, b) for b in request.bundles]
            if all(t is not None for t in taken):
                _commit(node, trial)
                return [BundlePlacement(node.node_id, t) for t in taken if t is not None]
        if request.strategy == "STRICT_PACK":
            return None
    # One bundle per node where the strategy wants it, anywhere for PACK and SPREAD.
    distinct = request.strategy == "STRICT_SPREAD"
    trials = {n.node_id: n.copy() for n in nodes}
    used: set[str] = set()
    placements: list[BundlePlacement] = []
    for bundle in request.bundles:
        ranked = sorted(nodes, key=lambda n: n.node_id in used)  # prefer unused nodes
        for node in ranked:
            if distinct and node.node_id in used:
                continue
            gpus = _take(trials[node.node_id], bundle)
            if gpus is not None:
                used.add(node.node_id)
                placements.append(BundlePlacement(node.node_id, gpus))
                break
        else:
            return None
    for node in nodes:
        _commit(node, trials[node.node_id])
    return placements


def _take(node: Node, bundle: dict[str, float]) -> tuple[int, ...] | None:
    """Take ``bundle`` out of ``node`` (in place); the GPU ids used, or None if it does not fit."""
    for name, amount in bundle.items():
        if name != "GPU" and node.resources.get(name, 0.0) + EPSILON < amount:
            return None
    gpu = bundle.get("GPU", 0.0)
    chosen: tuple[int, ...] = ()
    if gpu > EPSILON:
        if gpu < 1:
            fitting = [i for i, f in enumerate(node.gpus) if f + EPSILON >= gpu]
            if not fitting:
                return None
            best = min(fitting, key=lambda i: (node.gpus[i], i))
            node.gpus[best] -= gpu
            chosen = (best,)
        else:
            whole = [i for i, f in enumerate(node.gpus) if f >= 1 - EPSILON]
            if len(whole) < math.ceil(gpu - EPSILON):
                return None
            chosen = tuple(whole[: math.ceil(gpu - EPSILON)])
            for i in chosen:
                node.gpus[i] = 0.0
    for name, amount in bundle.items():
        if name != "GPU":
            node.resources[name] = node.resources.get(name, 0.0) - amount
    return chosen


def _commit(node: Node, trial: Node) -> None:
    node.resources, node.gpus = trial.resources, trial.gpus


def _shortfall(request: ReplicaRequest, nodes: Sequence[Node]) -> str:
    """Why a replica fits on no node even when the cluster is empty, else that it is full."""
    largest: dict[str, float] = {}
    for bundle in request.bundles:
        for name, amount in bundle.items():
            largest[name] = max(largest.get(name, 0.0), amount)
    for name, amount in sorted(largest.items()):
        if name == "GPU":
            fractional = amount < 1
            best = max(
                ((max(n.gpus, default=0.0) if fractional else len(n.gpus)) for n in nodes),
                default=0.0,
            )
            if best + EPSILON < amount:
                what = f"{amount:g} of one GPU" if fractional else f"{amount:g} GPUs on one node"
                have = "no GPU" if not any(n.gpus for n in nodes) else f"at most {best:g}"
                return f"needs {what}; the nodes have {have}"
        elif all(n.resources.get(name, 0.0) + EPSILON < amount for n in nodes):
            most = max((n.resources.get(name, 0.0) for n in nodes), default=0.0)
            return (
                f"needs {amount_text(name, amount)} on one node; the largest node has "
                + amount_text(name, most)
            )
    return "the nodes are full once the replicas above are placed"


def amount_text(name: str, value: float) -> str:
    """An amount of a resource as a person reads it (memory in GiB)."""
    if name in ("memory", "object_store_memory"):
        return f"{value / _GIB:.1f} GiB {name}"
    return f"{value:g} {name}"
