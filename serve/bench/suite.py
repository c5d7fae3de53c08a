"""``jarag bench run``: every speed figure of the project measured in one run, side by
side, written as JSON, a Markdown report and PNG plots.

Sections (each can be left out):

- ``overhead``: the full RAG request through the five-deployment graph against the
  same engines in one FastAPI process, at 1, 4, 16 and 64 concurrent clients.
- ``streaming``: time to first token through the graph against the engines called
  directly.
- ``batching``: Embedder and Reranker throughput with dynamic batching on and off,
  for the configured stages and for random-weight sentence-transformers models
  where sentence-transformers is installed.
- ``retrieval``: queries per second of the demo index and the benchmark-of-record
  index, one query per call and batched.
- ``scale``: latency and memory of the full request as the index grows.

Nothing is compared across runs: every ratio divides two figures of this run, and
the setups compared alternate run by run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from deployments.embedder.factory import create_embedder
from deployments.generator.protocol import ChatTurn, GenerationRequest
from deployments.ingress.stages import ServeHandle, Stages
from deployments.retriever.config import IndexConfig
from deployments.retriever.factory import create_retriever
from serve.app import build_graph, in_process_stages
from serve.bench import batching, corpora, overhead, report, retrieval, scale
from serve.bench.cluster import (
    SERVE_SETTINGS,
    ServeInstance,
    direct_ingress_url,
    free_port,
    run_all,
    serve_instance,
)
from serve.bench.machine import load_average, machine, versions
from serve.bench.overhead import Plan
from serve.bench.processes import our_processes, resident_mib
from serve.bench.single_process import serving
from serve.config import AppConfig

SECTIONS = ("overhead", "streaming", "batching", "retrieval", "scale")
SCHEMA_VERSION = 1
GRAPH_APP = "bench-graph"
EMPTY_APPS = tuple(f"bench-empty-stage-{n}" for n in range(1, 5))
"""Four applications of one EmptyStage each: as many as the graph has hops."""
EMPTY_HOP = "empty deployment (handle)"
EMPTY_CHAIN = "four empty deployments in turn (handles)"
ENGINE_CALLS = "engines in this process"
HANDLE_CALLS = "stage deployments (handles)"
REPLICAS = ("Ingress", "Embedder", "Retriever", "Reranker", "Generator")
LIGHT: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0}}
"""Replicas reserve no CPU: every application of the suite fits on a 2-CPU machine at
once (Ray still gives each one OpenMP thread, as to a replica of 0.25 CPU)."""

SINGLE = "single process"
GRAPH = "graph (direct ingress)"
GRAPH_PROXY = "graph (Serve proxy)"
ENGINES = "engines called directly"
GENERATOR_ENGINE = "generator engine alone"
GENERATOR_DEPLOYMENT = "Generator deployment (handle)"
NO_RETRIEVAL = ", generator model (no retrieval)"
"""Suffix of the HTTP setups that stream a chat naming the generator's model: the
ingress skips retrieval and streams the generator's answer (the streaming path)."""
GENERATOR_NO_PASSAGES = "generator engine alone, no passages"


@dataclass(frozen=True)
class SuiteSettings:
    out_dir: Path = Path("bench-results")
    quick: bool = False
    runs: int = 5
    """Times every point is measured; a figure is the median, its spread the range."""
    seconds: float = 2.0
    """Measured time of one run of one point."""
    warmup_s: float = 0.5
    """Unmeasured load before each run (opens connections, fills caches)."""
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    stream_concurrency: tuple[int, ...] = (1, 16)
    batching_concurrency: int = 32
    retrieval_batch: int = 32
    scale: scale.ScaleSettings = field(default_factory=scale.ScaleSettings)
    data_dir: Path = corpora.DEFAULT_DATA_DIR
    record_distractor_files: int | None = None
    """JaQuAD files indexed as distractors (None: all of them, the benchmark of record)."""
    sections: tuple[str, ...] = SECTIONS
    models: bool = True
    """Also measure batching with random-weight sentence-transformers models."""
    app: dict[str, Any] = field(default_factory=dict)
    """Stage settings (an ``args:`` block without ``index``); default: the built-in ones."""
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Deployment options by name, as a Serve config's ``deployments:`` section."""
    report: Path | None = None
    """A Markdown page whose marked block (``report.REPORT_START`` .. ``REPORT_END``)
    receives the report (``make bench``: docs/performance.md)."""

    @property
    def plan(self) -> Plan:
        return Plan(self.runs, self.seconds, self.warmup_s)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> SuiteSettings:
        raw = json.loads(text)
        sc = raw["scale"]
        raw["scale"] = scale.ScaleSettings(
            sizes=tuple(sc["sizes"]),
            dimension=int(sc["dimension"]),
            factory=str(sc["factory"]),
            concurrency=tuple(sc["concurrency"]),
        )
        for name in ("out_dir", "data_dir", "report"):
            raw[name] = None if raw[name] is None else Path(raw[name])
        for name in ("concurrency", "stream_concurrency", "sections"):
            raw[name] = tuple(raw[name])
        return cls(**raw)


QUICK = SuiteSettings(
    quick=True,
    runs=2,
    seconds=0.3,
    warmup_s=0.05,
    concurrency=(1, 4),
    stream_concurrency=(1, 4),
    batching_concurrency=8,
    retrieval_batch=8,
    record_distractor_files=1,
    scale=scale.ScaleSettings(sizes=(500,), concurrency=(1,)),
    models=False,
)
"""Every section in well under a minute, over small indexes; the figures are not
meaningful (the test suite runs it to check that every field is produced)."""


class Suite:
    """One run: the indexes, the single-process server, the Ray instance, and the
    results, gathered section by section."""

    def __init__(self, settings: SuiteSettings, work: Path, out: TextIO) -> None:
        self.settings = settings
        self.work = work
        self.out = out
        self.results: dict[str, Any] = {}
        self.handles: dict[str, Any] = {}

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def graph_options(self) -> dict[str, dict[str, Any]]:
        """Deployment options of the graph: the settings' own, else light ones."""
        return {name: {**LIGHT, **self.settings.deployments.get(name, {})} for name in REPLICAS}

    def config(self, version_dir: Path, **overrides: Any) -> AppConfig:
        args = {**self.settings.app, **overrides, "index": {"path": str(version_dir)}}
        return AppConfig.model_validate(args)

    async def run(self) -> dict[str, Any]:
        s = self.settings
        started = time.monotonic()
        self.results = {
            "schema_version": SCHEMA_VERSION,
            "suite": "ja-rag-serve benchmark",
            "quick": s.quick,
            "started_at": _now(),
            "environment": {
                "machine": machine(),
                "versions": versions(),
                "load_average": {"before": load_average()},
            },
            "settings": json.loads(s.to_json()),
            "section_seconds": {},
        }
        self._print_header()
        embedder = self.config(Path(".")).embedder
        demo = corpora.demo_index(self.work / "demo", embedder)
        self.say(f"demo index: {demo.passages} passages, built in {demo.build_s:.1f} s")
        indexes = [demo]
        if "retrieval" in s.sections:
            record = corpora.record_index(
                self.work / "record", embedder, s.data_dir, s.record_distractor_files
            )
            if record is None:
                self.say(f"no benchmark-of-record data under {s.data_dir}: that index is skipped")
            else:
                self.say(
                    f"{record.name} index: {record.passages:,} passages "
                    f"({record.documents:,} documents), built in {record.build_s:.1f} s"
                )
                indexes.append(record)
        config = self.config(demo.version_dir)
        self.results["stages"] = {
            name: getattr(config, name).model_dump(mode="json")
            for name in ("embedder", "retriever", "reranker", "generator")
        }
        async with serve_instance() as instance:
            self.results["environment"]["ray_serve_settings"] = instance.settings
            await self._timed("deploy", self._deploy(config, demo, indexes))
            if {"overhead", "streaming"} & set(s.sections):
                await self._timed("graph", self._graph(instance, config, demo))
            if "batching" in s.sections:
                await self._timed("batching", self._batching(config, demo))
            if "retrieval" in s.sections:
                await self._timed("retrieval", self._retrieval(indexes))
            if "scale" in s.sections:
                await self._timed("scale", self._scale(instance))
        self.results["environment"]["load_average"]["after"] = load_average()
        self.results["finished_at"] = _now()
        self.results["duration_s"] = round(time.monotonic() - started, 1)
        self.results["targets"] = report.targets(self.results)
        return self.results

    async def _timed(self, name: str, section: Any) -> None:
        started = time.monotonic()
        await section
        self.results["section_seconds"][name] = round(time.monotonic() - started, 1)

    def _print_header(self) -> None:
        env = self.results["environment"]
        m = env["machine"]
        quick = " (quick mode: figures not meaningful)" if self.settings.quick else ""
        self.say(f"ja-rag-serve benchmark suite{quick}")
        self.say(
            f"machine: {m['platform']}, {m['cpus']} CPUs ({m['cpu_model']}), "
            f"{m['memory_gib']} GiB RAM"
        )
        self.say("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
        self.say(
            "load average (1, 5, 15 min) before: "
            + " ".join(map(str, env["load_average"]["before"]))
        )

    async def _deploy(
        self, config: AppConfig, demo: corpora.BenchIndex, indexes: Sequence[corpora.BenchIndex]
    ) -> None:
        """Every application the sections use, started together (their replicas start
        in parallel): the graph, one Embedder and one Reranker of their own, and a
        Retriever per index."""

        from ray import serve

        s = self.settings
        apps: dict[str, Any] = {}
        if {"overhead", "streaming"} & set(s.sections):
            apps[GRAPH_APP] = build_graph(config, options=self.graph_options())
        if "overhead" in s.sections:
            empty = serve.deployment(overhead.EmptyStage, name="EmptyStage", **LIGHT)
            apps.update({name: empty.bind() for name in EMPTY_APPS})
        ongoing = max(s.batching_concurrency * 2, 64)
        if "batching" in s.sections:
            for stage, stage_config in (
                ("Embedder", config.embedder),
                ("Reranker", config.reranker),
            ):
                options = {
                    **LIGHT,
                    **s.deployments.get(stage, {}),
                    "num_replicas": 1,
                    "max_ongoing_requests": ongoing,
                }
                apps[f"bench-{stage.lower()}"] = batching.stage_app(
                    stage, stage_config, str(demo.version_dir), options
                )
        if "retrieval" in s.sections:
            for number, index in enumerate(indexes):
                apps[f"bench-retriever-{number}"] = retrieval.retriever_app(
                    config.retriever,
                    IndexConfig(path=str(index.version_dir), verify_checksums=False),
                    str(index.version_dir),
                    ongoing,
                )
        self.say(f"deploying {', '.join(apps)}")
        self.handles = run_all(apps, ingress_app=GRAPH_APP)

    def _delete(self, name: str) -> None:
        from ray import serve

        if self.handles.pop(name, None) is not None:
            serve.delete(name)

    # --- graph overhead and streaming -------------------------------------------------

    async def _graph(
        self, instance: ServeInstance, config: AppConfig, demo: corpora.BenchIndex
    ) -> None:
        s = self.settings
        setups = {GRAPH_PROXY: f"http://127.0.0.1:{instance.http_port}"}
        direct = direct_ingress_url()
        if direct is not None:
            setups = {GRAPH: direct, **setups}
        port = free_port()
        try:
            with serving(config, demo.version_dir, port):
                http = {SINGLE: f"http://127.0.0.1:{port}", **setups}
                if "overhead" in s.sections:
                    self.say(
                        f"\n[overhead] full RAG request (non-streaming), {s.runs} runs of "
                        f"{s.seconds:g} s per point"
                    )
                    points = await overhead.measure_http(
                        http, demo.questions, s.concurrency, s.plan, False, self.say, GRAPH_APP
                    )
                    section = report.overhead_section(points, SINGLE)
                    section["resident_mib"] = _rounded(resident_mib(our_processes(GRAPH_APP)))
                    section.update(await self._hop_floor())
                    section["stage_calls"] = await self._stage_calls(config, demo)
                    self.results["overhead"] = section
                if "streaming" in s.sections:
                    await self._streaming(http, config, demo)
        finally:
            self._delete(GRAPH_APP)

    async def _hop_floor(self) -> dict[str, Any]:
        """Calls to deployments that do nothing, one call at a time: Ray Serve's own
        cost of one hop on this machine (``hop_floor``), and of four hops made the way
        the ingress makes them, each to another deployment in turn (``hop_chain``)."""
        from ray import serve

        handles = [serve.get_deployment_handle("EmptyStage", app_name=app) for app in EMPTY_APPS]
        points = await overhead.measure_in_process(
            {
                EMPTY_HOP: lambda: overhead.empty_hops(handles[:1]),
                EMPTY_CHAIN: lambda: overhead.empty_hops(handles),
            },
            (1,),
            self.settings.plan,
            self.say,
        )
        for app in EMPTY_APPS:
            self._delete(app)
        floor, chain = (p.summary(report.LATENCY) for p in points)
        return {"hop_floor": floor, "hop_chain": chain}

    async def _stage_calls(self, config: AppConfig, demo: corpora.BenchIndex) -> dict[str, Any]:
        """Where the graph's added latency goes: the chain's four calls timed one by
        one, made by the ingress's way (the graph's stage deployments through handles)
        and by the single process's (the engines in this process)."""
        from ray import serve

        handles = (
            serve.get_deployment_handle(name, app_name=GRAPH_APP) for name in overhead.STAGE_CALLS
        )
        retrieval_defaults = config.retrieval_defaults()
        sides = {
            ENGINE_CALLS: overhead.ChainCalls(in_process_stages(config), retrieval_defaults),
            HANDLE_CALLS: overhead.ChainCalls(graph_stages(*handles), retrieval_defaults),
        }
        self.say("stage by stage, one request at a time:")
        return await overhead.measure_stage_calls(
            sides, demo.questions, self.settings.plan, self.say
        )

    async def _streaming(
        self, http: Mapping[str, str], config: AppConfig, demo: corpora.BenchIndex
    ) -> None:
        """Time to first token of the whole RAG request against the engines called
        directly, and of the streaming path alone (the ingress streaming a chat that
        names the generator's model, so no retrieval) against the generator engine
        given the same conversation."""
        from ray import serve

        s = self.settings
        self.say(f"\n[streaming] time to first token, {s.runs} runs of {s.seconds:g} s per point")
        local = in_process_stages(config)
        handles = (
            serve.get_deployment_handle(name, app_name=GRAPH_APP)
            for name in ("Embedder", "Retriever", "Reranker", "Generator")
        )
        graph = graph_stages(*handles)
        retrieval_defaults = config.retrieval_defaults()
        prepared = await overhead.prepared_generations(local, demo.questions, retrieval_defaults)
        bare = [GenerationRequest([ChatTurn("user", q)], []) for q in demo.questions]
        in_process: dict[str, Callable[[], Any]] = {
            ENGINES: lambda: overhead.engine_chain(local, demo.questions, retrieval_defaults),
            GENERATOR_ENGINE: lambda: overhead.generation_only(local, prepared),
            GENERATOR_DEPLOYMENT: lambda: overhead.generation_only(graph, prepared),
            GENERATOR_NO_PASSAGES: lambda: overhead.generation_only(local, bare),
        }
        levels, plan = s.stream_concurrency, s.plan
        points = await overhead.measure_http(
            http, demo.questions, levels, plan, True, self.say, GRAPH_APP
        )
        # The graph's streaming path through the direct ingress, else through the proxy.
        graph_route = GRAPH if GRAPH in http else GRAPH_PROXY
        streaming_path = {
            name + NO_RETRIEVAL: url for name, url in http.items() if name in (SINGLE, graph_route)
        }
        points += await overhead.measure_http(
            streaming_path,
            demo.questions,
            levels,
            plan,
            True,
            self.say,
            GRAPH_APP,
            model=(await local.describe("generator"))["model"],
        )
        points += await overhead.measure_in_process(in_process, levels, plan, self.say)
        compared = {
            **{name: (ENGINES, report.WHOLE_REQUEST) for name in http},
            **{name: (GENERATOR_NO_PASSAGES, report.STREAMING_PATH) for name in streaming_path},
            GENERATOR_DEPLOYMENT: (GENERATOR_ENGINE, report.GENERATOR_HOP),
        }
        self.results["streaming"] = report.streaming_section(points, compared)

    # --- batching ---------------------------------------------------------------------

    async def _batching(self, config: AppConfig, demo: corpora.BenchIndex) -> None:
        s = self.settings
        self.say(
            f"\n[batching] one replica, {s.batching_concurrency} concurrent requests, "
            "batching on and off"
        )
        local = in_process_stages(config)
        candidates = await local.retrieve(demo.questions[0], config.retriever.top_k)
        documents = [h.passage.document_text for h in candidates]
        rows = []
        for stage_config, load in (
            (config.embedder, batching.StageLoad("Embedder", demo.questions, demo.questions)),
            (
                config.reranker,
                batching.StageLoad("Reranker", documents, demo.questions, len(documents)),
            ),
        ):
            name = f"bench-{load.stage.lower()}"
            try:
                points = await batching.measure_batching(
                    self.handles[name], load, [s.batching_concurrency], s.plan, self.say
                )
            finally:
                self._delete(name)
            rows.append(report.batching_rows(load.stage, points, stage_config))
        self.results["batching"] = {
            "stages": rows,
            "models": await self._tiny_models() if s.models else None,
        }

    async def _tiny_models(self) -> dict[str, Any]:
        from ray import serve

        try:
            from serve.bench import model_batching
        except ImportError as error:  # the models extra is not installed
            return {"skipped": f"needs the models extra ({error})"}
        s = self.settings
        settings = model_batching.BatchingBenchmark(batch_wait_timeout_s=0.0, text_tokens=32)
        self.say(
            f"random-weight sentence-transformers models: BERT '{settings.shape}', "
            f"texts of {settings.text_tokens} tokens, one replica with 1 CPU"
        )
        stages = model_batching.prepare(settings, self.work / "models")
        questions = corpora.demo_questions()
        options = {
            "num_replicas": 1,
            "max_ongoing_requests": max(s.batching_concurrency * 2, 64),
            "ray_actor_options": {"num_cpus": settings.num_cpus},
        }
        loads = (
            (stages.embedder, batching.StageLoad("Embedder", stages.texts, questions)),
            (
                stages.reranker,
                batching.StageLoad(
                    "Reranker", stages.texts, questions, settings.documents_per_rerank
                ),
            ),
        )
        rows = []
        for stage_config, load in loads:
            name = f"bench-model-{load.stage.lower()}"
            app = batching.stage_app(load.stage, stage_config, str(stages.index), options)
            handle = serve.run(app, name=name, route_prefix=None)
            try:
                points = await batching.measure_batching(
                    handle, load, [s.batching_concurrency], s.plan, self.say
                )
            finally:
                serve.delete(name)
            rows.append(report.batching_rows(load.stage, points, stage_config))
        return {
            "model": f"random BERT '{settings.shape}', texts of {settings.text_tokens} tokens",
            "stages": rows,
            "engine_alone": [
                {
                    "stage": b.stage,
                    "request_items": b.request_items,
                    "ms_per_item_one_request": round(b.request_ms_per_item, 3),
                    "batch_items": b.batch_items,
                    "ms_per_item_full_batch": round(b.batch_ms_per_item, 3),
                    "gain": round(b.gain, 2),
                }
                for b in stages.baselines
            ],
        }

    # --- retrieval --------------------------------------------------------------------

    async def _retrieval(self, indexes: Sequence[corpora.BenchIndex]) -> None:
        s = self.settings
        self.say(
            f"\n[retrieval] search with 1 and {s.retrieval_batch} queries per call; the "
            f"Retriever deployment at {s.batching_concurrency} concurrent, batching on and off"
        )
        rows = [
            await self._retrieval_index(index, f"bench-retriever-{number}")
            for number, index in enumerate(indexes)
        ]
        record = len(indexes) > 1
        self.results["retrieval"] = {
            "indexes": rows,
            "record_data": str(s.data_dir) if record else None,
        }

    async def _retrieval_index(self, index: corpora.BenchIndex, app: str) -> dict[str, Any]:
        s = self.settings
        config = self.config(index.version_dir)
        embedder = create_embedder(config.embedder, index.version_dir)
        retriever = create_retriever(config.retriever, config.index, index.version_dir)
        questions = index.questions[:2048]
        vectors = np.concatenate(
            [embedder.embed_queries(questions[i : i + 256]) for i in range(0, len(questions), 256)]
        )
        top_k = config.retriever.top_k
        points = await retrieval.measure_engine(
            retriever, vectors, s.retrieval_batch, top_k, s.plan, self.say
        )
        try:
            points += await retrieval.measure_served(
                self.handles[app], vectors, top_k, s.batching_concurrency, s.plan, self.say
            )
        finally:
            self._delete(app)
        return report.retrieval_rows(index, points, config.retriever)

    # --- scale ------------------------------------------------------------------------

    async def _scale(self, instance: ServeInstance) -> None:
        from ray import serve

        s, sc = self.settings, self.settings.scale
        sizes = ", ".join(f"{n:,}" for n in sc.sizes)
        self.say(
            f"\n[scale] synthetic corpora of {sizes} documents; built-in embedder at "
            f"dimension {sc.dimension}; FAISS {sc.factory}"
        )
        rows = []
        via = "Serve proxy"
        for number, size in enumerate(sc.sizes):
            index = scale.build_synthetic(self.work, size, sc)
            index_mib = scale.directory_mib(index.version_dir)
            self.say(
                f"{index.passages:,} passages indexed in {index.build_s:.1f} s "
                f"({index_mib:.0f} MiB)"
            )
            config = self.config(
                index.version_dir, embedder=scale.embedder_config(sc).model_dump()
            ).model_copy(
                update={"index": IndexConfig(path=str(index.version_dir), verify_checksums=False)}
            )
            name = f"bench-scale-{number}"
            run_all({name: build_graph(config, options=self.graph_options())}, ingress_app=name)
            try:
                direct = direct_ingress_url()
                via = "direct ingress" if direct else "Serve proxy"
                url = direct or f"http://127.0.0.1:{instance.http_port}"
                points = await overhead.measure_http(
                    {f"{index.passages:,} passages": url},
                    index.questions,
                    sc.concurrency,
                    s.plan,
                    False,
                    self.say,
                    name,
                )
                memory = resident_mib(our_processes(name))
            finally:
                serve.delete(name)
            rows.append(report.scale_row(index, points, memory, index_mib))
            shutil.rmtree(index.version_dir.parent.parent, ignore_errors=True)
        self.results["scale"] = {
            "embedder": f"built-in hashing embedder, dimension {sc.dimension}",
            "faiss_factory": sc.factory,
            "url": via,
            "points": rows,
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in values.items()}


def run_suite(settings: SuiteSettings, out: TextIO = sys.stdout) -> Path:
    """Measure in this process, then write ``results.json``, ``results.md`` and the
    plots into a new directory ``<out_dir>/<UTC start time>/``; returns it. Ray Serve's
    settings only reach this process's handles if they were in the environment before
    Ray Serve was imported; ``launch`` sees to that."""
    with tempfile.TemporaryDirectory(prefix="jarag-bench-") as scratch:
        results = asyncio.run(Suite(settings, Path(scratch), out).run())
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    directory = settings.out_dir / stamp
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    markdown = report.markdown(results)
    (directory / "results.md").write_text(markdown, encoding="utf-8")
    written = [directory / "results.json", directory / "results.md"]
    written += report.plots(results, directory)
    if settings.report is not None:
        report.update_report(settings.report, results, directory)
        written.append(settings.report)
    print("\n" + markdown, file=out)
    print("written: " + ", ".join(str(p) for p in written), file=out, flush=True)
    return directory


def launch(settings: SuiteSettings) -> int:
    """The suite in a new Python process whose environment holds Ray Serve's settings
    from the start (they are read when Ray Serve is imported)."""
    env = {**os.environ, **SERVE_SETTINGS}
    command = [sys.executable, "-m", "serve.bench.suite"]
    return subprocess.run(command, input=settings.to_json(), text=True, env=env).returncode


def graph_stages(embedder: Any, retriever: Any, reranker: Any, generator: Any) -> Stages:
    """The ingress's stage calls over the graph's DeploymentHandles."""
    return Stages(
        ServeHandle(embedder), ServeHandle(retriever), ServeHandle(reranker), ServeHandle(generator)
    )


def main() -> None:
    import faiss

    # The engines measured in this process search as a replica does: Ray gives a
    # replica with less than 2 CPUs one OpenMP thread (two, on a loaded 2-CPU
    # machine, made batched searches up to 10x slower by spinning).
    faiss.omp_set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run_suite(SuiteSettings.from_json(sys.stdin.read()))


if __name__ == "__main__":
    main()
