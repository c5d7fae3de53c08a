"""Autoscaling, measured on a multi-node local cluster.

The graph is deployed with the production resource shape (``serve_config.yaml``'s
fractional GPUs and autoscaling settings) on a local cluster whose worker nodes
declare GPUs; the built-in stages stand in for the models, with the Embedder and
Reranker paced to a fixed time per item (``serve/bench/paced_engines.py``) so that one
replica's capacity is known and small. A closed-loop HTTP client on loopback keeps
a light load, steps it up, holds it, then stops. The report gives, per stage, the
time from the step to the first added replica serving and from the load's end to
the scale-down, with the settings used, and the end-to-end latency percentiles
before, during and after the scale-up.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import requests

from deployments.embedder.config import HashingEmbedderConfig
from deployments.retriever.config import IndexConfig
from serve.app import build_graph
from serve.bench.machine import machine_summary
from serve.bench.paced_engines import PacedEmbedder, PacedReranker
from serve.config import AppConfig
from serve.config_file import find_application, load_serve_config
from serve.demo import DEMO_CORPUS
from serve.indexing.build import BuildSettings, build_index
from serve.ops.local_cluster import ClusterShape, LocalCluster, local_cluster

APP = "autoscale-bench"
DEPLOYMENTS = ("Ingress", "Embedder", "Retriever", "Reranker", "Generator")
DRIVEN = ("Embedder", "Reranker")
"""The stages the load step drives past their target (the others keep their replicas)."""
AUTOSCALING_KEYS = (
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "upscale_delay_s",
    "downscale_delay_s",
    "look_back_period_s",
    "metrics_interval_s",
)
QUICK_DELAYS = {
    "upscale_delay_s": 1.0,
    "downscale_delay_s": 4.0,
    "look_back_period_s": 2.0,
    # How often replicas and handles report their load to the controller: in Ray 2.60
    # still this (deprecated) field, 10 s by default.
    "metrics_interval_s": 0.5,
}
"""Delays of a few seconds, for the test suite."""
QUESTIONS = (
    "香川県の県庁所在地はどこですか？",
    "沖縄県の県庁所在地は？",
    "北海道の道庁所在地はどこ？",
    "京都府について教えてください。",
    "日本で一番北にある都道府県は？",
    "富士山がある県はどこですか？",
)


def production_options(
    serve_config: Path,
    num_cpus: float = 0.25,
    autoscaling: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The ``deployments:`` section of ``serve_config``, as ``build_graph(options=...)``
    takes it, fit for a local cluster: the same fractional GPUs, autoscaling and queue
    limits, but ``num_cpus`` CPUs per replica and no memory reservation (the local
    nodes are small), and the ``autoscaling`` keys overriding the file's per deployment.
    """
    app = find_application(load_serve_config(serve_config), serve_config, None)
    options: dict[str, dict[str, Any]] = {}
    for entry in app.get("deployments") or []:
        name = str(entry["name"])
        opts = {k: v for k, v in entry.items() if k != "name"}
        actor = {k: v for k, v in (opts.get("ray_actor_options") or {}).items() if k != "memory"}
        actor["num_cpus"] = num_cpus
        opts["ray_actor_options"] = actor
        if "autoscaling_config" in opts or (autoscaling and name in autoscaling):
            opts["autoscaling_config"] = {
                **(opts.get("autoscaling_config") or {}),
                **((autoscaling or {}).get(name) or {}),
            }
        options[name] = opts
    return options


# --- load ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    started: float
    """``time.monotonic()`` when sent."""
    seconds: float
    status: int
    """HTTP status; 0 when no response came."""
    degraded: bool = False
    error: str = ""
    """The start of the body of a response that is not 200."""


@dataclass
class ClosedLoopLoad:
    """Keeps ``concurrency`` chat requests in flight (each thread sends its next request
    when its last one is answered), at most ``max_requests`` in all; the concurrency can
    be changed while it runs, up to ``max_workers``."""

    url: str
    max_workers: int = 16
    max_requests: int = 20_000
    timeout_s: float = 60.0
    samples: list[Sample] = field(default_factory=list)
    _concurrency: int = 0
    _sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def set_concurrency(self, concurrency: int) -> None:
        self._concurrency = min(concurrency, self.max_workers)

    def between(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.started < end]

    def _take(self) -> int | None:
        with self._lock:
            if self._sent >= self.max_requests:
                return None
            self._sent += 1
            return self._sent

    def _worker(self, index: int) -> None:
        session = requests.Session()
        try:
            while not self._stop.is_set():
                if index >= self._concurrency:
                    self._stop.wait(0.05)
                    continue
                number = self._take()
                if number is None:
                    return
                question = QUESTIONS[number % len(QUESTIONS)]
                body = {"messages": [{"role": "user", "content": question}]}
                started = time.monotonic()
                try:
                    response = session.post(self.url, json=body, timeout=self.timeout_s)
                    sample = Sample(
                        started,
                        time.monotonic() - started,
                        response.status_code,
                        bool(response.headers.get("X-RAG-Degraded")),
                        "" if response.ok else response.text[:300],
                    )
                except requests.RequestException:
                    sample = Sample(started, time.monotonic() - started, 0)
                with self._lock:
                    self.samples.append(sample)
        finally:
            session.close()

    @contextmanager
    def running(self) -> Iterator[ClosedLoopLoad]:
        threads = [
            threading.Thread(target=self._worker, args=(i,), daemon=True)
            for i in range(self.max_workers)
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=self.timeout_s + 5)


# --- replicas -----------------------------------------------------------------------------


def running_replicas(app: str, deployments: Sequence[str] = DEPLOYMENTS) -> dict[str, int]:
    """RUNNING replicas per deployment (started and passing health checks: serving)."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return {name: 0 for name in deployments}
    return {
        name: int(status.deployments[name].replica_states.get("RUNNING", 0))
        if name in status.deployments
        else 0
        for name in deployments
    }


def wait_for_replicas(
    app: str, wanted: Callable[[dict[str, int]], bool], timeout_s: float, poll_s: float = 0.25
) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = running_replicas(app)
        if wanted(counts):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"{app}: replicas {counts} did not reach the wanted state")
        time.sleep(poll_s)


# --- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoscaleBenchmark:
    """What to run. The defaults are the full run; ``QUICK`` is the test suite's."""

    serve_config: Path = Path("serve_config.yaml")
    shape: ClusterShape = field(default_factory=ClusterShape)
    delays: Literal["production", "quick"] = "production"
    """``production``: serve_config.yaml's upscale/downscale delays and look-back period;
    ``quick``: a few seconds each (for the test suite)."""
    target_ongoing_requests: float = 2
    """The Embedder's and Reranker's target here (production's suits a GPU's throughput;
    the paced stand-ins serve far fewer requests per replica)."""
    max_replicas: int = 3
    """The Embedder's and Reranker's maximum here (production's is sized for a cluster)."""
    embed_seconds_per_text: float = 0.25
    rerank_seconds_per_request: float = 0.25
    light_concurrency: int = 1
    heavy_concurrency: int = 10
    before_s: float = 15.0
    after_s: float = 15.0
    scale_up_timeout_s: float = 120.0
    scale_down_timeout_s: float = 400.0

    def autoscaling_overrides(self) -> dict[str, dict[str, Any]]:
        driven: dict[str, Any] = {
            "target_ongoing_requests": self.target_ongoing_requests,
            "max_replicas": self.max_replicas,
        }
        if self.delays == "quick":
            driven |= QUICK_DELAYS
        return {name: dict(driven) for name in DRIVEN}


QUICK = AutoscaleBenchmark(
    delays="quick",
    embed_seconds_per_text=0.2,
    rerank_seconds_per_request=0.2,
    heavy_concurrency=8,
    before_s=3.0,
    after_s=3.0,
    scale_up_timeout_s=60.0,
    scale_down_timeout_s=60.0,
)
"""A smoke run of about a minute on the test suite's cluster."""


@dataclass
class StageTiming:
    deployment: str
    settings: dict[str, Any]
    initial: int
    peak: int
    at_end: int
    """Replicas when the load ended (below the peak if load shifted to another stage)."""
    first_added_s: float | None
    """From the load step to the first added replica RUNNING; None if none was added."""
    scaled_down_s: float | None
    """From the load's end to the stage back at its minimum; None if it never got there
    within the wait, or was not above it when the load ended."""


@dataclass
class LatencyPhase:
    name: str
    concurrency: int
    samples: list[Sample]

    @property
    def ok(self) -> list[float]:
        return [s.seconds * 1000 for s in self.samples if s.status == 200]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.ok, q)) if self.ok else float("nan")

    @property
    def failed(self) -> int:
        return sum(s.status != 200 for s in self.samples)


@dataclass
class AutoscaleReport:
    stages: list[StageTiming]
    phases: list[LatencyPhase]
    nodes: dict[str, set[str]]
    """The nodes each driven stage's replicas ran on at the peak."""


def run(
    settings: AutoscaleBenchmark, out: TextIO, cluster: LocalCluster | None = None
) -> AutoscaleReport:
    """Runs the benchmark on ``cluster`` (or on a local cluster of ``settings.shape``
    started for it) and prints the report."""
    load_before = os.getloadavg()
    with ExitStack() as stack:
        if cluster is None:
            cluster = stack.enter_context(local_cluster(settings.shape))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jarag-as-")))
        options = production_options(
            settings.serve_config, autoscaling=settings.autoscaling_overrides()
        )
        report = _measure(settings, cluster, _demo_index(scratch), options)
    print_report(settings, report, options, (load_before, os.getloadavg()), out)
    return report


def _demo_index(scratch: Path) -> Path:
    root = scratch / "index"
    build_index([DEMO_CORPUS], root, HashingEmbedderConfig(), BuildSettings(progress=False))
    return root


def _measure(
    settings: AutoscaleBenchmark,
    cluster: LocalCluster,
    index: Path,
    options: dict[str, dict[str, Any]],
) -> AutoscaleReport:
    from ray import serve

    engines: Any = {
        "embedder": functools.partial(
            PacedEmbedder, seconds_per_text=settings.embed_seconds_per_text
        ),
        "reranker": functools.partial(
            PacedReranker, seconds_per_request=settings.rerank_seconds_per_request
        ),
    }
    config = AppConfig(index=IndexConfig(path=str(index)))
    minimum = {name: _min_replicas(options[name]) for name in DEPLOYMENTS}
    serve.run(
        build_graph(config, engines=engines, options=options),
        name=APP,
        route_prefix=f"/{APP}",
    )
    try:
        wait_for_replicas(APP, lambda c: all(c[n] >= minimum[n] for n in DEPLOYMENTS), 120)
        load = ClosedLoopLoad(cluster.url(f"/{APP}") + "/v1/chat/completions")
        with load.running():
            return _timeline(settings, load, minimum, options, cluster.dashboard_url)
    finally:
        serve.delete(APP)


def _timeline(
    settings: AutoscaleBenchmark,
    load: ClosedLoopLoad,
    minimum: dict[str, int],
    options: dict[str, dict[str, Any]],
    dashboard: str,
) -> AutoscaleReport:
    from ray import serve

    initial = running_replicas(APP)
    load.set_concurrency(settings.light_concurrency)
    time.sleep(1.0)  # warm-up, not measured
    before_start = time.monotonic()
    time.sleep(settings.before_s)
    step = time.monotonic()
    load.set_concurrency(settings.heavy_concurrency)
    first_added: dict[str, float] = {}
    peak = dict(initial)
    maximum = {n: int(options[n]["autoscaling_config"]["max_replicas"]) for n in DRIVEN}
    deadline = step + settings.scale_up_timeout_s
    while time.monotonic() < deadline:
        counts = running_replicas(APP)
        now = time.monotonic()
        for name in DEPLOYMENTS:
            peak[name] = max(peak[name], counts[name])
            if counts[name] > initial[name] and name not in first_added:
                first_added[name] = now - step
        if all(counts[n] >= maximum[n] for n in DRIVEN):
            break
        time.sleep(0.25)
    scaled = time.monotonic()
    nodes = replica_nodes(dashboard, APP, DRIVEN)
    time.sleep(settings.after_s)
    end = time.monotonic()
    load.set_concurrency(0)
    at_end = running_replicas(APP)
    for name in DEPLOYMENTS:
        peak[name] = max(peak[name], at_end[name])
    scaled_down: dict[str, float] = {}
    above = [n for n in DEPLOYMENTS if at_end[n] > minimum[n]]
    deadline = end + settings.scale_down_timeout_s
    while above and time.monotonic() < deadline:
        counts = running_replicas(APP)
        now = time.monotonic()
        for name in above:
            if name not in scaled_down and counts[name] <= minimum[name]:
                states = serve.status().applications[APP].deployments[name].replica_states
                if set(states) <= {"RUNNING"}:  # the others stopped, not only draining
                    scaled_down[name] = now - end
        if all(n in scaled_down for n in above):
            break
        time.sleep(0.25)
    stages = [
        StageTiming(
            name,
            {k: options[name]["autoscaling_config"].get(k) for k in AUTOSCALING_KEYS},
            initial[name],
            peak[name],
            at_end[name],
            first_added.get(name),
            scaled_down.get(name),
        )
        for name in DEPLOYMENTS
    ]
    phases = [
        LatencyPhase("before", settings.light_concurrency, load.between(before_start, step)),
        LatencyPhase("during scale-up", settings.heavy_concurrency, load.between(step, scaled)),
        LatencyPhase("after scale-up", settings.heavy_concurrency, load.between(scaled, end)),
    ]
    return AutoscaleReport(stages, phases, nodes)


def _min_replicas(options: dict[str, Any]) -> int:
    autoscaling = options.get("autoscaling_config")
    if autoscaling:
        return int(autoscaling.get("min_replicas", 1))
    return int(options.get("num_replicas", 1))


def replica_actors(dashboard: str, app: str, deployment: str) -> list[Any]:
    """The live replica actors of ``deployment`` (Ray's state API, at ``dashboard``)."""
    from ray.util.state import list_actors

    return list(
        list_actors(
            address=dashboard,
            filters=[
                ("class_name", "=", f"ServeReplica:{app}:{deployment}"),
                ("state", "=", "ALIVE"),
            ],
            detail=True,
        )
    )


def replica_nodes(dashboard: str, app: str, deployments: Sequence[str]) -> dict[str, set[str]]:
    """The nodes the live replicas of each deployment run on."""
    return {
        name: {str(a.node_id) for a in replica_actors(dashboard, app, name)} for name in deployments
    }


def print_report(
    settings: AutoscaleBenchmark,
    report: AutoscaleReport,
    options: dict[str, dict[str, Any]],
    load: tuple[tuple[float, ...], tuple[float, ...]],
    out: TextIO,
) -> None:
    print("ja-rag-serve autoscaling benchmark (multi-node local cluster)", file=out)
    for line in machine_summary():
        print(line, file=out)
    before, after = (" ".join(f"{x:.1f}" for x in values) for values in load)
    print(f"load average (1, 5, 15 min): {before} before, {after} after", file=out)
    print(f"cluster: {settings.shape.describe()}; Serve proxy on the head", file=out)
    gpus = ", ".join(
        f"{n} {options[n]['ray_actor_options'].get('num_gpus', 0):g}" for n in DEPLOYMENTS
    )
    print(f"GPU share per replica (from {settings.serve_config}): {gpus}", file=out)
    print(
        "metrics: how often replicas and handles report their load to the Serve controller "
        "(autoscaling_config.metrics_interval_s; 'default' is Ray's 10 s)",
        file=out,
    )
    print(
        f"stand-in models: Embedder {settings.embed_seconds_per_text * 1000:g} ms per text, "
        f"Reranker {settings.rerank_seconds_per_request * 1000:g} ms per request; "
        f"load: {settings.light_concurrency} request(s) in flight, stepped to "
        f"{settings.heavy_concurrency}, held {settings.after_s:g} s after the scale-up, then "
        f"stopped; delays: {settings.delays}",
        file=out,
    )
    header = (
        f"{'stage':<10} {'min':>3} {'max':>3} {'target':>6} {'up delay':>8} {'down delay':>10} "
        f"{'look-back':>9} {'metrics':>7} | {'replicas':>18} | "
        f"{'step -> first added serving':>27} | {'load end -> back to min':>23}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for stage in report.stages:
        s = stage.settings
        print(
            f"{stage.deployment:<10} {_fmt(s['min_replicas']):>3} {_fmt(s['max_replicas']):>3} "
            f"{_fmt(s['target_ongoing_requests']):>6} {_seconds(s['upscale_delay_s']):>8} "
            f"{_seconds(s['downscale_delay_s']):>10} {_seconds(s['look_back_period_s']):>9} "
            f"{_seconds(s['metrics_interval_s']):>7} | {_replicas(stage):>18} | "
            f"{_elapsed(stage.first_added_s, stage.peak > stage.initial):>27} | "
            f"{_scaled_down(stage):>23}",
            file=out,
        )
    for name, nodes in report.nodes.items():
        print(f"{name} replicas at the peak ran on {len(nodes)} node(s)", file=out)
    print(
        f"{'end-to-end chat latency':<24} {'in flight':>9} {'answers':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'not 200':>8}",
        file=out,
    )
    for phase in report.phases:
        print(
            f"{phase.name:<24} {phase.concurrency:>9} {len(phase.ok):>8} "
            f"{phase.percentile(50):>8.0f} {phase.percentile(99):>8.0f} {phase.failed:>8}",
            file=out,
        )


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _seconds(value: Any) -> str:
    return "default" if value is None else f"{float(value):g} s"


def _replicas(stage: StageTiming) -> str:
    text = f"{stage.initial} -> {stage.peak}"
    return text if stage.at_end == stage.peak else f"{text} ({stage.at_end} at end)"


def _scaled_down(stage: StageTiming) -> str:
    if stage.peak == stage.initial:
        return "not driven"
    if stage.at_end <= stage.initial:
        return "before the load ended"
    return _elapsed(stage.scaled_down_s, True)


def _elapsed(seconds: float | None, scaled: bool) -> str:
    if not scaled:
        return "not driven" if seconds is None else "-"
    return "not within the wait" if seconds is None else f"{seconds:.1f} s"
