"""Pre-flight check of a Serve config, before anything is deployed.

Validates the file (Ray Serve's schema and this application's typed ``args:``),
cross-checks settings that must agree across sections (a vLLM memory share and
the Generator's GPU fraction, batch sizes and ``max_ongoing_requests``, the index
manifest and the embedder), then asks a running Ray cluster for its nodes and
packs the replicas onto them the way Ray places them: CPUs, memory and custom
resources per node, fractional GPUs per physical GPU, placement-group bundles
per their strategy. Anything that cannot be placed is reported with what is
missing.
"""

from __future__ import annotations

import json
import socket
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from deployments.embedder.config import (
    EmbedderConfig,
    HashingEmbedderConfig,
    SentenceTransformersEmbedderConfig,
)
from deployments.generator.config import VLLMGeneratorConfig
from deployments.index.format import (
    MANIFEST_FILE,
    InvalidIndexError,
    resolve_version_dir,
)
from deployments.retriever.config import IndexConfig
from serve.app import DEPLOYMENT_DEFAULTS
from serve.config import AppConfig
from serve.config_file import IMPORT_PATH, ConfigFileError, load_serve_config
from serve.ops.packing import (
    EPSILON,
    Node,
    Packing,
    ReplicaRequest,
    amount_text,
    deployment_options,
    pack,
    replica_requests,
)

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    packing: Packing | None = None
    nodes: list[Node] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    def add(self, level: Level, message: str) -> None:
        self.findings.append(Finding(level, message))


# --- settings that must agree across sections ----------------------------------------------


def config_findings(config: AppConfig, options: dict[str, dict[str, Any]], report: Report) -> None:
    """Cross-section rules that no single pydantic model can see."""
    actor = {name: opts.get("ray_actor_options") or {} for name, opts in options.items()}

    def gpu_share(name: str) -> float:
        bundles = options[name].get("placement_group_bundles")
        if bundles:
            return max((float(b.get("GPU", 0)) for b in bundles), default=0.0)
        return float(actor[name].get("num_gpus") or 0)

    for name, stage in (("Embedder", config.embedder), ("Reranker", config.reranker)):
        device = getattr(stage, "device", None)
        if device == "cuda" and gpu_share(name) <= 0:
            report.add(
                "error",
                f"{name}: device is 'cuda' but the {name} deployment requests no GPU "
                "(ray_actor_options.num_gpus): its replicas would see no GPU",
            )
    _batching_findings(config, options, report)
    generator = config.generator
    if isinstance(generator, VLLMGeneratorConfig):
        _vllm_findings(generator, options["Generator"], gpu_share("Generator"), report)


def _batching_findings(
    config: AppConfig, options: dict[str, dict[str, Any]], report: Report
) -> None:
    embedder = config.embedder
    ongoing = int(options["Embedder"].get("max_ongoing_requests", 100))
    if embedder.batching and ongoing < embedder.max_batch_size:
        report.add(
            "warning",
            f"Embedder: max_ongoing_requests ({ongoing}) < embedder.max_batch_size "
            f"({embedder.max_batch_size}): a replica never holds enough queries to fill a batch; "
            f"raise max_ongoing_requests to at least {embedder.max_batch_size}",
        )
    reranker = config.reranker
    ongoing = int(options["Reranker"].get("max_ongoing_requests", 100))
    pairs = ongoing * config.retriever.top_k
    if reranker.batching and pairs < reranker.max_batch_size:
        report.add(
            "warning",
            f"Reranker: max_ongoing_requests ({ongoing}) x retriever.top_k "
            f"({config.retriever.top_k}) = {pairs} pairs < reranker.max_batch_size "
            f"({reranker.max_batch_size}): batches can never fill",
        )


def _vllm_findings(
    generator: VLLMGeneratorConfig, options: dict[str, Any], share: float, report: Report
) -> None:
    bundles = options.get("placement_group_bundles") or []
    tp = generator.tensor_parallel_size
    if share <= 0:
        report.add(
            "error",
            "Generator: the vllm backend needs a GPU, but the Generator deployment requests none "
            "(set ray_actor_options.num_gpus, or placement_group_bundles for tensor parallelism)",
        )
        return
    if tp > 1:
        gpu_bundles = sum(1 for b in bundles if float(b.get("GPU", 0)) >= 1)
        actor_gpus = float((options.get("ray_actor_options") or {}).get("num_gpus") or 0)
        if bundles and gpu_bundles < tp:
            report.add(
                "error",
                f"Generator: tensor_parallel_size {tp} needs {tp} placement_group_bundles with one "
                f"GPU each; the config has {gpu_bundles}",
            )
        elif bundles and actor_gpus > 0:
            report.add(
                "warning",
                "Generator: with placement_group_bundles the replica actor itself should request "
                "num_gpus: 0, so that every bundle's GPU is left for a vLLM worker",
            )
        elif not bundles and actor_gpus < tp:
            report.add(
                "error",
                f"Generator: tensor_parallel_size {tp} needs {tp} GPUs: give the deployment "
                f"placement_group_bundles (one GPU each) or num_gpus: {tp}",
            )
    elif generator.gpu_memory_utilization > share + EPSILON:
        report.add(
            "error",
            f"Generator: vLLM gpu_memory_utilization {generator.gpu_memory_utilization:g} exceeds "
            f"the Generator's GPU share ({share:g}): vLLM would take memory that Ray gives to the "
            "stages sharing its GPU. Lower gpu_memory_utilization or raise num_gpus.",
        )


def index_findings(config: AppConfig, base: Path, report: Report) -> None:
    """Warn, without loading any model, when an index (that of every knowledge base) was
    built by another embedder."""
    several = len(config.served_knowledge_bases) > 1
    for knowledge_base in config.served_knowledge_bases:
        label = f"knowledge base {knowledge_base.name!r}: index" if several else "index"
        _index_finding(config, knowledge_base, label, base, report)


def _index_finding(
    config: AppConfig, index: IndexConfig, label: str, base: Path, report: Report
) -> None:
    path = Path(index.path).expanduser()
    path = path if path.is_absolute() else base / path
    try:
        version_dir = resolve_version_dir(path, index.version)
        manifest = json.loads((version_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (InvalidIndexError, OSError, ValueError) as error:
        report.add(
            "warning",
            f"{label}: cannot read {path} from here ({error}); the replicas read it on their nodes",
        )
        return
    built = manifest.get("embedder", {})
    differences = [
        f"{key}: index {built_value!r} != config {wanted!r}"
        for key, wanted in expected_embedder(config.embedder).items()
        if (built_value := _lookup(built, key)) != wanted
    ]
    if differences:
        report.add(
            "warning",
            f"{label} {version_dir} was built with a different embedder "
            f"({'; '.join(differences)}): it will be refused; rebuild it with "
            "`jarag index build --config`",
        )
    else:
        report.add("info", f"{label} {version_dir}: built with the configured embedder")


def expected_embedder(config: EmbedderConfig) -> dict[str, Any]:
    """The manifest fields that the embedder config alone decides."""
    if isinstance(config, HashingEmbedderConfig):
        return {
            "backend": "hashing",
            "dimension": config.dimension,
            "settings.ngram_orders": list(config.ngram_orders),
        }
    assert isinstance(config, SentenceTransformersEmbedderConfig)
    query, passage = config.prefixes
    expected: dict[str, Any] = {
        "backend": "sentence-transformers",
        "model": config.model,
        "settings.query_prefix": query,
        "settings.passage_prefix": passage,
        "settings.normalize": config.normalize,
    }
    if config.max_seq_length is not None:
        expected["settings.max_seq_length"] = config.max_seq_length
    return expected


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# --- the cluster --------------------------------------------------------------------------


def cluster_nodes(address: str | None) -> tuple[list[Node], dict[str, float]]:
    """The alive nodes' total resources, and what the whole cluster has free right now."""
    import ray

    started = not ray.is_initialized()
    if started:
        ensure_reachable(address)
        ray.init(address=address or "auto", logging_level="WARNING", log_to_driver=False)
    try:
        nodes = [
            Node.from_totals(n["NodeID"], str(n.get("NodeManagerAddress", "")), n["Resources"])
            for n in ray.nodes()
            if n.get("Alive")
        ]
        available = {k: float(v) for k, v in ray.available_resources().items()}
    finally:
        if started:
            ray.shutdown()
    return nodes, available


def ensure_reachable(address: str | None) -> None:
    """Fail in seconds, not minutes (Ray's own retries), when nothing listens there."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as error:
        raise ConnectionError(f"nothing answers at {address} ({error})") from error


# --- the whole check ----------------------------------------------------------------------


def check(
    path: Path,
    address: str | None = None,
    app_name: str | None = None,
    connect: bool = True,
    cluster_autoscales: bool = False,
    nodes: list[Node] | None = None,
) -> Report:
    """Everything ``jarag check`` reports. ``nodes`` replaces the cluster (for tests)."""
    report = Report()
    try:
        data = load_serve_config(path)
    except ConfigFileError as error:
        report.add("error", str(error))
        return report
    from ray.serve.schema import ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(data)
    except ValidationError as error:
        report.add("error", f"{path} is not a valid Ray Serve config: {error}")
        return report
    apps = [a for a in data["applications"] if a.get("import_path") == IMPORT_PATH]
    if app_name is not None:
        apps = [a for a in apps if a.get("name") == app_name]
    if not apps:
        report.add("error", f"{path} has no application with import_path {IMPORT_PATH}")
        return report
    requests: list[ReplicaRequest] = []
    maximum: list[ReplicaRequest] = []
    for app in apps:
        label = app.get("name", "default")
        unknown = {e.get("name") for e in app.get("deployments") or []} - set(DEPLOYMENT_DEFAULTS)
        if unknown:
            report.add(
                "error",
                f"{label}: unknown deployment names {sorted(map(str, unknown))} in deployments: "
                f"(this application has {', '.join(DEPLOYMENT_DEFAULTS)})",
            )
        try:
            config = AppConfig.model_validate(app.get("args") or {})
        except ValidationError as error:
            report.add("error", f"{label}: args do not validate: {error}")
            continue
        options = deployment_options(app)
        config_findings(config, options, report)
        index_findings(config, Path.cwd(), report)
        requests += replica_requests(options, "start")
        maximum += replica_requests(options, "max")
    if not connect and nodes is None:
        return report
    if nodes is None:
        try:
            nodes, available = cluster_nodes(address)
        except (ConnectionError, RuntimeError) as error:
            report.add(
                "error",
                f"cannot reach a Ray cluster at {address or 'RAY_ADDRESS or the local one'}: "
                f"{error}. Start one (ray start --head) or pass --address.",
            )
            return report
    else:
        available = {}
    report.nodes = nodes
    report.packing = pack(requests, nodes)
    if not report.packing.fits:
        level: Level = "warning" if cluster_autoscales else "error"
        for request, reason in report.packing.unplaced:
            report.add(
                level,
                f"{request.deployment} replica {request.number} "
                f"({_describe(request)}) cannot be placed: {reason}",
            )
        if cluster_autoscales:
            report.add("warning", "the cluster autoscales: nodes may still be added for these")
    else:
        report.add(
            "info",
            f"the {len(requests)} replicas at deploy time fit on {len(nodes)} node(s)",
        )
        _free_now_findings(requests, available, report)
    if report.packing.fits and not pack(maximum, nodes).fits:
        report.add(
            "warning",
            f"at their max_replicas the deployments need more than the cluster has "
            f"({_totals(maximum)}): autoscaling beyond it leaves replicas pending until nodes "
            "are added",
        )
    return report


def _free_now_findings(
    requests: Iterable[ReplicaRequest], available: dict[str, float], report: Report
) -> None:
    if not available:
        return
    needed: dict[str, float] = defaultdict(float)
    for request in requests:
        for bundle in request.bundles:
            for name, amount in bundle.items():
                needed[name] += amount
    short = [
        amount_text(name, amount)
        for name, amount in needed.items()
        if available.get(name, 0.0) + EPSILON < amount and name in ("CPU", "GPU", "memory")
    ]
    if short:
        report.add(
            "warning",
            "other work holds part of the cluster right now: it has less free than this graph "
            f"needs ({', '.join(short)}); a redeploy of this same application frees its own",
        )


def _describe(request: ReplicaRequest) -> str:
    parts = [amount_text(name, request.total(name)) for name in ("CPU", "GPU", "memory")]
    shown = [p for p, n in zip(parts, ("CPU", "GPU", "memory"), strict=True) if request.total(n)]
    if len(request.bundles) > 1:
        shown.append(f"{len(request.bundles)} bundles, {request.strategy}")
    return ", ".join(shown) or "no resources"


def _totals(requests: Iterable[ReplicaRequest]) -> str:
    totals: dict[str, float] = defaultdict(float)
    for request in requests:
        for name in ("CPU", "GPU"):
            totals[name] += request.total(name)
    return ", ".join(amount_text(name, totals[name]) for name in ("CPU", "GPU"))


def format_report(report: Report) -> str:
    """The findings, then where each replica would go, one line each."""
    lines = []
    if report.packing is not None and report.packing.placed:
        names = {n.node_id: n.address or n.node_id[:8] for n in report.nodes}
        lines.append("placement at deploy time:")
        placed = sorted(report.packing.placed, key=lambda p: (p[0].deployment, p[0].number))
        for request, bundles in placed:
            where = "; ".join(
                names.get(b.node, b.node[:8])
                + (f" GPU {','.join(map(str, b.gpu_ids))}" if b.gpu_ids else "")
                for b in bundles
            )
            lines.append(
                f"  {request.deployment:<10} #{request.number}  {_describe(request):<32} -> {where}"
            )
        lines.extend(_gpu_lines(report))
    for finding in report.findings:
        lines.append(f"{finding.level.upper()}: {finding.message}")
    verdict = "OK" if report.ok else "FAILED"
    lines.append(f"{verdict}: {'no' if report.ok else 'some'} blocking problems found")
    return "\n".join(lines)


def _gpu_lines(report: Report) -> list[str]:
    assert report.packing is not None
    shares: dict[tuple[str, int], list[str]] = {}
    for request, bundles in report.packing.placed:
        for bundle, spec in zip(bundles, request.bundles, strict=True):
            for gpu in bundle.gpu_ids:
                amount = min(spec.get("GPU", 0.0), 1.0)
                shares.setdefault((bundle.node, gpu), []).append(f"{request.deployment} {amount:g}")
    names = {n.node_id: n.address or n.node_id[:8] for n in report.nodes}
    return [
        f"  GPU {gpu} on {names.get(node, node[:8])}: {' + '.join(parts)}"
        for (node, gpu), parts in sorted(shares.items())
    ]
