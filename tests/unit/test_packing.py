"""Replicas packed onto nodes as Ray places them: fractional GPUs per physical GPU,
whole GPUs, CPUs and memory per node, placement-group strategies."""

from __future__ import annotations

from serve.ops.packing import Node, ReplicaRequest, pack

GIB = 1024**3


def node(name: str, cpus: float, gpus: int = 0, memory_gib: float = 64) -> Node:
    return Node.from_totals(name, name, {"CPU": cpus, "GPU": gpus, "memory": memory_gib * GIB})


def replica(name: str, *bundles: dict[str, float], strategy: str = "PACK") -> ReplicaRequest:
    return ReplicaRequest(name, 1, bundles, strategy)


def test_fractions_pack_per_gpu_not_by_total() -> None:
    requests = [replica(f"R{i}", {"CPU": 1, "GPU": 0.6}) for i in range(3)]
    packing = pack(requests, [node("a", 8, gpus=2)])  # 1.8 <= 2 GPUs in total, yet ...
    assert len(packing.placed) == 2 and len(packing.unplaced) == 1
    assert "needs" not in packing.unplaced[0][1] and "full" in packing.unplaced[0][1]


def test_whole_gpus_and_cpus_per_node() -> None:
    packing = pack([replica("G", {"CPU": 1, "GPU": 2})], [node("a", 8, 1), node("b", 8, 1)])
    assert packing.unplaced[0][1] == "needs 2 GPUs on one node; the nodes have at most 1"
    packing = pack([replica("C", {"CPU": 12})], [node("a", 8), node("b", 8)])
    assert packing.unplaced[0][1] == "needs 12 CPU on one node; the largest node has 8 CPU"
    packing = pack([replica("M", {"CPU": 1, "memory": 100 * GIB})], [node("a", 8)])
    assert "100.0 GiB memory" in packing.unplaced[0][1]


def test_placement_group_strategies() -> None:
    bundles: tuple[dict[str, float], ...] = ({"CPU": 1, "GPU": 1}, {"GPU": 1})
    two_nodes = [node("a", 8, 1), node("b", 8, 1)]
    assert not pack([replica("TP", *bundles, strategy="STRICT_PACK")], two_nodes).fits
    spread = pack([replica("TP", *bundles, strategy="PACK")], two_nodes)
    assert spread.fits and {b.node for b in spread.placed[0][1]} == {"a", "b"}
    assert pack([replica("TP", *bundles, strategy="STRICT_PACK")], [node("c", 8, 2)]).fits
    assert not pack([replica("TP", *bundles, strategy="STRICT_SPREAD")], [node("c", 8, 2)]).fits
