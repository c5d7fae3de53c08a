"""``jarag bench run``: every speed figure of the project measured in one run, side by
side, written as JSON, a Markdown table and PNG plots.

Sections (each can be left out):

- ``overhead``: the full RAG request through the five-deployment graph against the
  same engines in one FastAPI process, at 1, 4, 16 and 64 concurrent clients.
- ``streaming``: time to first token through the graph against the engines called
  directly.
- ``batching``: Embedder and Reranker throughput with dynamic batching on and off,
  for the configured stages, and for random-weight sentence-transformers models
  (issue 3's figures) where sentence-transformers is installed.
- ``retrieval``: queries per second of the demo index and the benchmark-of-record
  index, one query per call and batched.
- ``scale``: latency and memory of the full request as the index grows.

Nothing is compared across runs: every ratio divides two figures of this run, and
the setups compared alternate run by run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from deployments.embedder.factory import create_embedder
from deployments.generator.factory import create_generator
from deployments.ingress.stages import GraphStages, LocalStages
from deployments.reranker.factory import create_reranker
from deployments.retriever.config import IndexConfig, RetrieverConfig
from deployments.retriever.faiss_search import FaissRetriever
from serve.app import build_graph
from serve.bench import batching, corpora, overhead, report, retrieval, scale
from serve.bench.cluster import ServeInstance, direct_ingress_url, serve_instance
from serve.bench.load import Point
from serve.bench.machine import load_average, machine, versions
from serve.bench.overhead import Plan
from serve.bench.processes import our_processes, resident_mib
from serve.bench.single_process import serving
from serve.config import AppConfig

SECTIONS = ("overhead", "streaming", "batching", "retrieval", "scale")
SCHEMA_VERSION = 1

SINGLE = "single process"
GRAPH = "graph (direct ingress)"
GRAPH_PROXY = "graph (Serve proxy)"
ENGINES = "engines called directly"
GENERATOR_ENGINE = "generator engine alone"
GENERATOR_DEPLOYMENT = "Generator deployment (handle)"


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
    sections: tuple[str, ...] = SECTIONS
    models: bool = True
    """Also measure batching with random-weight sentence-transformers models."""
    app: dict[str, Any] = field(default_factory=dict)
    """The stage settings (an ``args:`` block without ``index``); default: built-in."""
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Deployment options by name, as a Serve config's ``deployments:`` section."""

    @property
    def plan(self) -> Plan:
        return Plan(self.runs, self.seconds, self.warmup_s)


QUICK = SuiteSettings(
    quick=True,
    runs=2,
    seconds=0.3,
    warmup_s=0.05,
    concurrency=(1, 4),
    stream_concurrency=(1, 4),
    batching_concurrency=8,
    retrieval_batch=8,
    scale=scale.ScaleSettings(sizes=(200, 1_000), concurrency=(1,)),
    models=False,
)
"""Every section in well under a minute, with a small record index; the figures are not
meaningful (the test suite runs it to check that every field is produced)."""


class Suite:
    """One run: the indexes, the single-process server, the Ray instance, and the
    results gathered section by section."""

    def __init__(self, settings: SuiteSettings, work: Path, out: TextIO) -> None:
        self.settings = settings
        self.work = work
        self.out = out
        self.results: dict[str, Any] = {}

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def config(self, version_dir: Path, **overrides: Any) -> AppConfig:
        args = {**self.settings.app, **overrides, "index": {"path": str(version_dir)}}
        return AppConfig.model_validate(args)

    async def run(self) -> dict[str, Any]:
        s = self.settings
        started = time.time()
        self.results = {
            "schema_version": SCHEMA_VERSION,
            "suite": "ja-rag-serve benchmark",
            "quick": s.quick,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": {
                "machine": machine(),
                "versions": versions(),
                "load_average": {"before": load_average()},
            },
            "settings": _settings_dict(s),
        }
        self._print_header()
        demo = corpora.demo_index(self.work / "demo", self.config(Path(".")).embedder)
        self.say(f"demo index: {demo.passages} passages, built in {demo.build_s:.1f} s")
        config = self.config(demo.version_dir)
        self.results["stages"] = _stage_summary(config)
        with serve_instance() as instance:
            self.results["environment"]["ray_serve_settings"] = instance.settings
            if "overhead" in s.sections or "streaming" in s.sections:
                await self._overhead_and_streaming(instance, config, demo)
            if "batching" in s.sections:
                await self._batching(config, demo)
            if "retrieval" in s.sections:
                await self._retrieval(demo)
            if "scale" in s.sections:
                await self._scale(instance)
        self.results["environment"]["load_average"]["after"] = load_average()
        self.results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.results["duration_s"] = round(time.time() - started, 1)
        self.results["targets"] = report.targets(self.results)
        return self.results

    def _print_header(self) -> None:
        env = self.results["environment"]
        m = env["machine"]
        self.say(
            "ja-rag-serve benchmark suite"
            + (" (quick: figures not meaningful)" if self.settings.quick else "")
        )
        self.say(
            f"machine: {m['platform']}, {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB RAM"
        )
        self.say("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
        self.say(
            "load average (1, 5, 15 min) before: "
            + " ".join(map(str, env["load_average"]["before"]))
        )

    # --- graph overhead and streaming -------------------------------------------------

    async def _overhead_and_streaming(
        self, instance: ServeInstance, config: AppConfig, demo: corpora.BenchIndex
    ) -> None:
        from ray import serve

        s = self.settings
        build_graph_app = build_graph(config, options=s.deployments)
        serve.run(build_graph_app, name="bench-graph", route_prefix="/")
        setups = {GRAPH_PROXY: f"http://127.0.0.1:{instance.http_port}"}
        direct = direct_ingress_url()
        if direct is not None:
            setups = {GRAPH: direct, **setups}
        port = corpora_free_port()
        try:
            with serving(config, demo.version_dir, port):
                http = {SINGLE: f"http://127.0.0.1:{port}", **setups}
                if "overhead" in s.sections:
                    self.say(
                        f"\n[overhead] full RAG request (non-streaming), {s.runs} runs of {s.seconds:g} s per point"
                    )
                    points = await overhead.measure_http(
                        http, demo.questions, s.concurrency, s.plan, stream=False, progress=self.say
                    )
                    self.results["overhead"] = report.overhead_section(points, SINGLE)
                    self.results["overhead"]["resident_mib"] = _rounded(
                        resident_mib(our_processes())
                    )
                if "streaming" in s.sections:
                    await self._streaming(http, config, demo)
        finally:
            serve.delete("bench-graph")

    async def _streaming(
        self, http: Mapping[str, str], config: AppConfig, demo: corpora.BenchIndex
    ) -> None:
        from ray import serve

        s = self.settings
        self.say(f"\n[streaming] time to first token, {s.runs} runs of {s.seconds:g} s per point")
        local = _local_stages(config, demo.version_dir)
        graph = GraphStages(
            *(
                serve.get_deployment_handle(n, app_name="bench-graph")
                for n in ("Embedder", "Retriever", "Reranker", "Generator")
            )
        )
        prepared = await overhead.prepared_generations(local, demo.questions)
        in_process: dict[str, Callable[[], Any]] = {
            ENGINES: lambda: overhead.engine_chain(local, demo.questions),
            GENERATOR_ENGINE: lambda: overhead.generation_only(local, demo.questions, prepared),
            GENERATOR_DEPLOYMENT: lambda: overhead.generation_only(graph, demo.questions, prepared),
        }
        points = await overhead.measure_http(
            http, demo.questions, s.stream_concurrency, s.plan, stream=True, progress=self.say
        )
        points += await overhead.measure_in_process(
            in_process, s.stream_concurrency, s.plan, progress=self.say
        )
        self.results["streaming"] = report.streaming_section(points, ENGINES, GENERATOR_ENGINE)

    # --- batching ---------------------------------------------------------------------

    async def _batching(self, config: AppConfig, demo: corpora.BenchIndex) -> None:
        s = self.settings
        self.say(f"\n[batching] {s.batching_concurrency} concurrent requests, batching on and off")
        local = _local_stages(config, demo.version_dir)
        candidates = await local.retrieve(demo.questions[0], None)
        documents = [h.passage.document_text for h in candidates]
        loads = [
            (config.embedder, batching.StageLoad("Embedder", demo.questions, demo.questions)),
            (
                config.reranker,
                batching.StageLoad("Reranker", documents, demo.questions, len(documents)),
            ),
        ]
        section: dict[str, Any] = {
            "stages": await self._measure_stages(loads, str(demo.version_dir), "builtin")
        }
        section["models"] = await self._tiny_models() if s.models else None
        self.results["batching"] = section

    async def _measure_stages(
        self, loads: Sequence[tuple[Any, batching.StageLoad]], index_dir: str, label: str
    ) -> list[dict[str, Any]]:
        from ray import serve

        s = self.settings
        rows = []
        for stage_config, load in loads:
            name = f"bench-{label}-{load.stage.lower()}"
            options = {
                "num_replicas": 1,
                "max_ongoing_requests": max(s.batching_concurrency * 2, 64),
                "ray_actor_options": {"num_cpus": 0.25},
                **s.deployments.get(load.stage, {}),
            }
            handle = batching.deploy_stage(load.stage, stage_config, index_dir, name, options)
            try:
                points = await batching.measure_batching(
                    handle, load, [s.batching_concurrency], s.plan, progress=self.say
                )
            finally:
                serve.delete(name)
            rows.append(report.batching_rows(load.stage, points, stage_config))
        return rows

    async def _tiny_models(self) -> dict[str, Any] | None:
        try:
            from serve.bench import model_batching
        except ImportError as error:  # sentence-transformers not installed
            return {"skipped": f"needs the models extra ({error})"}
        settings = model_batching.BatchingBenchmark()
        self.say(
            "random-weight sentence-transformers models (issue 3's shape: tiny BERT, 128-token texts)"
        )
        stages = model_batching.prepare(settings, self.work / "models")
        questions = corpora.demo_questions()
        loads = [
            (stages.embedder, batching.StageLoad("Embedder", stages.texts, questions)),
            (
                stages.reranker,
                batching.StageLoad(
                    "Reranker", stages.texts, questions, settings.documents_per_rerank
                ),
            ),
        ]
        rows = await self._measure_stages(loads, str(stages.index), "models")
        return {
            "model": f"random BERT '{settings.shape}', texts of {settings.text_tokens} tokens",
            "stages": rows,
            "engine_alone": [
                {
                    "stage": b.stage,
                    "ms_per_item_one_request": round(b.request_ms_per_item, 3),
                    "request_items": b.request_items,
                    "ms_per_item_full_batch": round(b.batch_ms_per_item, 3),
                    "batch_items": b.batch_items,
                    "gain": round(b.gain, 2),
                }
                for b in stages.baselines
            ],
        }

    # --- retrieval --------------------------------------------------------------------

    async def _retrieval(self, demo: corpora.BenchIndex) -> None:
        s = self.settings
        self.say(
            f"\n[retrieval] search one query per call and {s.retrieval_batch} per call; Retriever deployment at {s.batching_concurrency} concurrent"
        )
        embedder_config = self.config(Path(".")).embedder
        indexes = [demo]
        record = corpora.record_index(
            self.work / "record", embedder_config, s.data_dir, 256 if s.quick else None
        )
        if record is not None:
            self.say(
                f"benchmark-of-record index: {record.passages} passages ({record.documents} documents), built in {record.build_s:.1f} s"
            )
            indexes.append(record)
        else:
            self.say(
                f"benchmark-of-record data not found under {s.data_dir}: that index is skipped"
            )
        rows = []
        for index in indexes:
            rows.append(await self._retrieval_index(index))
        self.results["retrieval"] = {
            "indexes": rows,
            "record_data": None if record is not None else f"not found under {s.data_dir}",
        }

    async def _retrieval_index(self, index: corpora.BenchIndex) -> dict[str, Any]:
        from ray import serve

        s = self.settings
        config = self.config(index.version_dir)
        embedder = create_embedder(config.embedder, index.version_dir)
        questions = index.questions[:2048]
        vectors = np.concatenate(
            [embedder.embed_queries(questions[i : i + 256]) for i in range(0, len(questions), 256)]
        )
        engine = FaissRetriever(index.version_dir, config.retriever, verify_checksums=False)
        points = await retrieval.measure_engine(
            engine, vectors, s.retrieval_batch, s.plan, self.say
        )
        handles = {}
        names = []
        try:
            for on in (True, False):
                name = f"bench-retriever-{'on' if on else 'off'}"
                names.append(name)
                retriever_config = RetrieverConfig.model_validate(
                    {**config.retriever.model_dump(), "batching": on}
                )
                handles[f"Retriever deployment, batching {'on' if on else 'off'}"] = (
                    retrieval.deploy_retriever(
                        retriever_config,
                        IndexConfig(path=str(index.version_dir), verify_checksums=False),
                        str(index.version_dir),
                        name,
                    )
                )
            points += await retrieval.measure_served(
                handles, vectors, s.batching_concurrency, s.plan, self.say
            )
        finally:
            for name in names:
                serve.delete(name)
        return report.retrieval_rows(index, points, s.retrieval_batch)

    # --- scale ------------------------------------------------------------------------

    async def _scale(self, instance: ServeInstance) -> None:
        from ray import serve

        s = self.settings
        sc = s.scale
        self.say(
            f"\n[scale] synthetic corpora of {', '.join(f'{n:,}' for n in sc.sizes)} documents; built-in embedder at dimension {sc.dimension}, FAISS {sc.factory}"
        )
        rows = []
        via = "Serve proxy"
        for size in sc.sizes:
            index = scale.build_synthetic(self.work, size, sc)
            self.say(
                f"{index.passages:,} passages indexed in {index.build_s:.1f} s ({scale.directory_mib(index.version_dir):.0f} MiB)"
            )
            config = self.config(
                index.version_dir,
                embedder=scale.embedder_config(sc).model_dump(),
            )
            config = config.model_copy(
                update={"index": IndexConfig(path=str(index.version_dir), verify_checksums=False)}
            )
            serve.run(
                build_graph(config, options=s.deployments), name="bench-scale", route_prefix="/"
            )
            try:
                direct = direct_ingress_url()
                via = "direct ingress" if direct else "Serve proxy"
                url = direct or f"http://127.0.0.1:{instance.http_port}"
                setup = f"{index.passages:,} passages"
                points = await overhead.measure_http(
                    {setup: url},
                    index.questions,
                    sc.concurrency,
                    s.plan,
                    stream=False,
                    progress=self.say,
                )
                memory = resident_mib(our_processes())
            finally:
                serve.delete("bench-scale")
            rows.append(
                report.scale_row(index, points, memory, scale.directory_mib(index.version_dir))
            )
            _remove_tree(index.version_dir.parent.parent)
        self.results["scale"] = {
            "embedder": f"built-in hashing embedder, dimension {sc.dimension}",
            "faiss_factory": sc.factory,
            "url": via,
            "points": rows,
        }


def corpora_free_port() -> int:
    from serve.bench.cluster import free_port

    return free_port()


def _local_stages(config: AppConfig, version_dir: Path) -> LocalStages:
    return LocalStages(
        create_embedder(config.embedder, version_dir),
        FaissRetriever(version_dir, config.retriever, verify_checksums=False),
        create_reranker(config.reranker, version_dir),
        create_generator(config.generator),
        top_n=config.reranker.top_n,
    )


def _stage_summary(config: AppConfig) -> dict[str, Any]:
    return {
        "embedder": config.embedder.model_dump(mode="json"),
        "retriever": config.retriever.model_dump(mode="json"),
        "reranker": config.reranker.model_dump(mode="json"),
        "generator": config.generator.model_dump(mode="json"),
    }


def _settings_dict(settings: SuiteSettings) -> dict[str, Any]:
    raw = dataclasses.asdict(settings)
    return json.loads(json.dumps(raw, default=str))


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in values.items()}


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="jarag-bench-suite-") as scratch:
        yield Path(scratch)


def run_suite(settings: SuiteSettings, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Measure, then write ``results.json``, ``results.md`` and the plots."""
    with _scratch() as work:
        results = asyncio.run(Suite(settings, work, out).run())
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    (settings.out_dir / "results.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    markdown = report.markdown(results)
    (settings.out_dir / "results.md").write_text(markdown, encoding="utf-8")
    plots = report.plots(results, settings.out_dir)
    print("\n" + markdown, file=out)
    print(
        f"written: {settings.out_dir / 'results.json'}, {settings.out_dir / 'results.md'}, "
        + ", ".join(str(p) for p in plots),
        file=out,
    )
    return results


def points_of(results: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    return list(results.get(section, {}).get("points", []))


__all__ = ["QUICK", "SECTIONS", "Point", "SuiteSettings", "run_suite"]
