"""The suite's results as JSON-ready dicts, a Markdown report and PNG plots."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from serve.bench.corpora import BenchIndex
from serve.bench.load import Point

LATENCY = ("requests_per_s", "p50_ms", "p99_ms")
STREAMING = ("requests_per_s", "ttft_p50_ms", "ttft_p99_ms", "p50_ms")
REPLICAS = ("Ingress", "Embedder", "Retriever", "Reranker", "Generator")


def _median(summary: Mapping[str, Any], metric: str) -> float:
    return float(summary[metric]["median"])


def _by(points: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], Mapping[str, Any]]:
    return {(p["setup"], int(p["concurrency"])): p for p in points}


def overhead_section(points: Sequence[Point], baseline: str) -> dict[str, Any]:
    summaries = [p.summary(LATENCY) for p in points]
    table = _by(summaries)
    comparison = []
    for (setup, level), summary in table.items():
        base = table.get((baseline, level))
        if setup == baseline or base is None:
            continue
        comparison.append(
            {
                "setup": setup,
                "concurrency": level,
                "throughput_ratio": _ratio(summary, base, "requests_per_s"),
                "added_p50_ms": _difference(summary, base, "p50_ms"),
                "added_p99_ms": _difference(summary, base, "p99_ms"),
            }
        )
    return {
        "baseline": baseline,
        "setups": list(dict.fromkeys(p.setup for p in points)),
        "points": summaries,
        "comparison": comparison,
    }


WHOLE_REQUEST = "whole RAG request"
STREAMING_PATH = "streaming path"
GENERATOR_HOP = "generator hop"
"""What a streaming comparison row measures; the time-to-first-token target is judged
on the streaming path and the generator hop (the same generation on both sides), the
whole request's figure adds the retrieval hops of the overhead section."""


def streaming_section(
    points: Sequence[Point], compared: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """Each setup named in ``compared`` (setup -> baseline setup, what it measures)
    against its baseline, level by level."""
    summaries = [p.summary(STREAMING) for p in points]
    table = _by(summaries)
    comparison = []
    for (setup, level), summary in table.items():
        if setup not in compared:
            continue
        baseline, measures = compared[setup]
        base = table.get((baseline, level))
        if base is None:
            continue
        comparison.append(
            {
                "setup": setup,
                "baseline": baseline,
                "measures": measures,
                "concurrency": level,
                "added_ttft_p50_ms": _difference(summary, base, "ttft_p50_ms"),
                "added_ttft_p99_ms": _difference(summary, base, "ttft_p99_ms"),
            }
        )
    return {"points": summaries, "comparison": comparison}


def batching_rows(stage: str, points: Sequence[Point], config: Any) -> dict[str, Any]:
    on = next(p for p in points if p.setup.endswith("on"))
    off = next(p for p in points if p.setup.endswith("off"))
    metrics = ("requests_per_s", "items_per_s", "p50_ms", "p99_ms")
    on_s, off_s = on.summary(metrics), off.summary(metrics)
    return {
        "stage": stage,
        "engine": getattr(config, "backend", type(config).__name__),
        "concurrency": on.concurrency,
        "items_per_request": on.items_per_request,
        "max_batch_size": config.max_batch_size,
        "batch_wait_timeout_s": config.batch_wait_timeout_s,
        "batching_on": on_s,
        "batching_off": off_s,
        "speedup": _ratio(on_s, off_s, "requests_per_s"),
    }


def retrieval_rows(index: BenchIndex, points: Sequence[Point], config: Any) -> dict[str, Any]:
    rows = []
    for point in points:
        summary = point.summary(("requests_per_s", "items_per_s", "p50_ms", "p99_ms"))
        summary["queries_per_call"] = point.items_per_request
        summary["queries_per_s"] = summary.pop("items_per_s")
        rows.append(summary)
    return {
        "index": index.name,
        "passages": index.passages,
        "documents": index.documents,
        "faiss_factory": index.factory,
        "build_s": round(index.build_s, 2),
        "top_k": config.top_k,
        "max_batch_size": config.max_batch_size,
        "batch_wait_timeout_s": config.batch_wait_timeout_s,
        "points": rows,
    }


def scale_row(
    index: BenchIndex, points: Sequence[Point], resident: Mapping[str, float], index_mib: float
) -> dict[str, Any]:
    return {
        "passages": index.passages,
        "documents": index.documents,
        "build_s": round(index.build_s, 1),
        "index_mib": round(index_mib, 1),
        "points": [p.summary(LATENCY) for p in points],
        "resident_mib": {r: round(resident[r], 1) for r in REPLICAS if r in resident},
    }


def _ratio(a: Mapping[str, Any], b: Mapping[str, Any], metric: str) -> float:
    denominator = _median(b, metric)
    return round(_median(a, metric) / denominator, 3) if denominator else math.nan


def _difference(a: Mapping[str, Any], b: Mapping[str, Any], metric: str) -> float:
    return round(_median(a, metric) - _median(b, metric), 2)


# --- targets ---------------------------------------------------------------------------


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The speed targets (graph overhead, throughput, time to first token, batching
    speedup), each with its figure."""
    found: list[dict[str, Any]] = []

    def add(name: str, target: str, value: float, met: bool) -> None:
        found.append({"name": name, "target": target, "value": value, "met": bool(met)})

    for row in results.get("overhead", {}).get("comparison", []):
        if row["concurrency"] == 1:
            add(
                f"{row['setup']}: added p50 latency at 1 client (ms)",
                "<= 10",
                row["added_p50_ms"],
                row["added_p50_ms"] <= 10,
            )
        if row["concurrency"] == 16:
            add(
                f"{row['setup']}: requests/s at 16 clients, against the single process",
                ">= 0.5",
                row["throughput_ratio"],
                row["throughput_ratio"] >= 0.5,
            )
    for row in results.get("streaming", {}).get("comparison", []):
        # The single process's rows and the whole request's are for reference.
        judged = row["measures"] != WHOLE_REQUEST and not row["setup"].startswith("single")
        if row["concurrency"] == 1 and judged:
            add(
                f"{row['setup']}: added time to first token at 1 client, against the "
                f"{row['baseline']} (ms)",
                "<= 5",
                row["added_ttft_p50_ms"],
                row["added_ttft_p50_ms"] <= 5,
            )
    models = (results.get("batching") or {}).get("models") or {}
    for row in models.get("stages", []):
        add(
            f"{row['stage']} (random-weight model): batching speedup at "
            f"{row['concurrency']} concurrent",
            ">= 4",
            row["speedup"],
            row["speedup"] >= 4,
        )
    return found


# --- Markdown --------------------------------------------------------------------------


def _fig(summary: Mapping[str, Any], metric: str, digits: int = 1) -> str:
    f = summary[metric]
    if any(isinstance(v, float) and math.isnan(v) for v in f.values()):
        return "-"
    return f"{f['median']:.{digits}f} ({f['min']:.{digits}f}-{f['max']:.{digits}f})"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def markdown(results: Mapping[str, Any]) -> str:
    env = results["environment"]
    m = env["machine"]
    load = env["load_average"]
    lines = [
        "# ja-rag-serve benchmark"
        + (" (quick mode: figures not meaningful)" if results["quick"] else ""),
        "",
        f"- machine: {m['platform']}, {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{m['memory_gib']} GiB RAM",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
        f"- load average (1, 5, 15 min): {_load(load.get('before'))} before, "
        f"{_load(load.get('after'))} after",
        "- Ray Serve settings: "
        + (
            ", ".join(f"{k}={v}" for k, v in env.get("ray_serve_settings", {}).items())
            or "defaults"
        ),
        f"- every figure: median of {results['settings']['runs']} runs of "
        f"{results['settings']['seconds']:g} s (min-max in brackets); started "
        f"{results['started_at']}, took {results.get('duration_s', 0):.0f} s",
        "",
    ]
    if results.get("targets"):
        lines += ["## Targets", ""]
        lines += _table(
            ["what", "target", "measured", "met"],
            [
                [t["name"], t["target"], f"{t['value']:.2f}", "yes" if t["met"] else "**no**"]
                for t in results["targets"]
            ],
        )
        lines.append("")
    if "overhead" in results:
        lines += _overhead_markdown(results["overhead"])
    if "streaming" in results:
        lines += _streaming_markdown(results["streaming"])
    if "batching" in results:
        lines += _batching_markdown(results["batching"])
    if "retrieval" in results:
        lines += _retrieval_markdown(results["retrieval"])
    if "scale" in results:
        lines += _scale_markdown(results["scale"])
    return "\n".join(lines) + "\n"


REPORT_START = "<!-- jarag bench run: start -->"
REPORT_END = "<!-- jarag bench run: end -->"


def update_report(path: Path, results: Mapping[str, Any], directory: Path) -> None:
    """Replaces the block between REPORT_START and REPORT_END in the Markdown page ``path``
    (``make bench``: docs/performance.md) with the report, its headings moved one level
    down, under the page's section that holds the block."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(REPORT_START), text.find(REPORT_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no block {REPORT_START} ... {REPORT_END} to fill")
    lines = markdown(results).splitlines()[1:]  # without its title
    body = "\n".join("#" + line if line.startswith("## ") else line for line in lines)
    note = (
        f"Written by `jarag bench run` ({directory.name}; the full results and the plots "
        f"were in `{directory}`).\n"
    )
    block = f"{REPORT_START}\n{note}{body.rstrip()}\n{REPORT_END}"
    path.write_text(text[:start] + block + text[end + len(REPORT_END) :], encoding="utf-8")


def _load(values: Sequence[float] | None) -> str:
    return " ".join(f"{v:.1f}" for v in values) if values else "-"


def _cpu(summary: Mapping[str, Any], setup: str) -> str:
    cpu = summary.get("cpu_ms_per_request", {})
    if setup.startswith("single"):
        groups = ["single-process"]
    else:
        groups = [g for g in ("proxy", *REPLICAS) if g in cpu]
    total = sum(cpu[g]["median"] for g in groups if g in cpu)
    return f"{total:.1f}" if groups else "-"


def _rows_with_comparison(
    section: Mapping[str, Any],
    cells: Callable[[Mapping[str, Any], Mapping[str, Any] | None], list[Any]],
) -> list[list[Any]]:
    """A table row per point: ``cells`` of the point and of its comparison row, if any."""
    comparison = {(c["setup"], c["concurrency"]): c for c in section["comparison"]}
    return [cells(p, comparison.get((p["setup"], p["concurrency"]))) for p in section["points"]]


def _overhead_markdown(section: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Graph overhead: full RAG request (non-streaming chat)",
        "",
        f"Closed-loop clients over loopback HTTP. Baseline: {section['baseline']} (the same "
        "engines and FastAPI app in one uvicorn process). Server CPU: CPU time of the "
        "serving processes per request (the single process; or the proxy and the five "
        "replicas).",
        "",
    ]
    rows = _rows_with_comparison(
        section,
        lambda p, c: [
            p["concurrency"],
            p["setup"],
            _fig(p, "requests_per_s"),
            _fig(p, "p50_ms"),
            _fig(p, "p99_ms"),
            _cpu(p, p["setup"]),
            f"{c['throughput_ratio']:.2f}x" if c else "1x",
            f"{c['added_p50_ms']:+.1f}" if c else "-",
        ],
    )
    rows.sort(key=lambda r: (r[0], section["setups"].index(r[1])))
    lines += _table(
        [
            "clients",
            "setup",
            "req/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/req",
            "req/s vs baseline",
            "added p50 ms",
        ],
        rows,
    )
    if floor := section.get("hop_floor"):
        cpu = floor.get("cpu_ms_per_request", {})
        caller, replica = (cpu.get(g, {}).get("median", math.nan) for g in ("client", "EmptyStage"))
        lines += [
            "",
            f"Ray Serve's own cost of one hop here (a deployment that does nothing, called "
            f"through a handle, one call at a time): p50 {_fig(floor, 'p50_ms', 2)} ms, "
            f"CPU {caller:.2f} ms in the caller + {replica:.2f} ms in the replica per call.",
        ]
        if chain := section.get("hop_chain"):
            four = 4 * floor["p50_ms"]["median"]
            lines[-1] += (
                " Four such deployments called in turn, as the ingress calls its stages "
                f"(the graph's four hops before any work or data): p50 "
                f"{_fig(chain, 'p50_ms', 2)} ms, against {four:.2f} ms for four single hops."
            )
    if calls := section.get("stage_calls"):
        lines += ["", *_stage_calls_markdown(calls, section)]
    return [*lines, ""]


def _stage_calls_markdown(calls: Mapping[str, Any], section: Mapping[str, Any]) -> list[str]:
    """Where the added latency goes: the chain's calls one by one, engines against
    stage deployments."""
    (engines, engine_parts), (handles, handle_parts) = calls["p50_ms"].items()
    rows = []
    for part in (*calls["stages"], "chain"):
        engine, handle = engine_parts[part], handle_parts[part]
        rows.append(
            [
                "the four in turn" if part == "chain" else part,
                _fig({"p50": engine}, "p50", 2),
                _fig({"p50": handle}, "p50", 2),
                f"{handle['median'] - engine['median']:+.2f}",
            ]
        )
    lines = [
        "Where the added latency goes: the chain's four calls timed one by one, one "
        f"request at a time, made as the ingress makes them ({handles}) and as the single "
        f"process makes them ({engines}); p50 per call in ms.",
        "",
        *_table(["call", engines, handles, "added"], rows),
    ]
    added = next(
        (
            c["added_p50_ms"]
            for c in section.get("comparison", [])
            if c["concurrency"] == 1 and "direct ingress" in c["setup"]
        ),
        None,
    )
    if added is not None:
        hops = handle_parts["chain"]["median"] - engine_parts["chain"]["median"]
        lines += [
            "",
            f"Of the graph's +{added:.1f} ms at 1 client (direct ingress), the four calls "
            f"through handles account for {hops:+.1f} ms; the rest ({added - hops:+.1f} ms) "
            "is what the graph adds outside the four calls: Serve's HTTP path into the "
            "ingress replica and the ingress's own work around the calls (deadlines among it).",
        ]
    return lines


def _streaming_markdown(section: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Streaming: time to first token",
        "",
        "First token = first SSE event with text. Whole RAG request: the chat with "
        "`stream: true` against the engines called directly (retrieve, rerank, generate in "
        "this process, no HTTP); it adds the retrieval hops of the overhead section. "
        "Streaming path: a streamed chat naming the generator's model (the ingress skips "
        "retrieval) against the generator engine given the same conversation; generator "
        "hop: the Generator deployment through a handle against its engine, with passages "
        "retrieved beforehand. The time-to-first-token target is judged on these two.",
        "",
    ]
    rows = _rows_with_comparison(
        section,
        lambda p, c: [
            p["concurrency"],
            p["setup"],
            _fig(p, "ttft_p50_ms", 2),
            _fig(p, "ttft_p99_ms", 2),
            _fig(p, "requests_per_s"),
            c["measures"] if c else "-",
            f"{c['added_ttft_p50_ms']:+.2f} vs {c['baseline']}" if c else "-",
        ],
    )
    rows.sort(key=lambda r: r[0])
    lines += _table(
        [
            "clients",
            "setup",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "req/s",
            "measures",
            "added TTFT p50 ms",
        ],
        rows,
    )
    return [*lines, ""]


def _stage_cpu(summary: Mapping[str, Any], stage: str) -> str:
    """CPU ms per request of the client (this process) and of the stage's replica."""
    cpu = summary.get("cpu_ms_per_request", {})
    client = cpu.get("client", {}).get("median", math.nan)
    replica = cpu.get(stage, {}).get("median", math.nan)
    return f"{client:.1f} + {replica:.1f}"


def _batching_rows_md(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["stage"],
            r["engine"],
            r["concurrency"],
            r["items_per_request"],
            f"{r['max_batch_size']} / {r['batch_wait_timeout_s'] * 1000:g} ms",
            _fig(r["batching_on"], "requests_per_s"),
            _fig(r["batching_off"], "requests_per_s"),
            f"{r['speedup']:.2f}x",
            _fig(r["batching_on"], "p50_ms"),
            _fig(r["batching_off"], "p50_ms"),
            _stage_cpu(r["batching_on"], r["stage"]),
            _stage_cpu(r["batching_off"], r["stage"]),
        ]
        for r in rows
    ]


def _batching_markdown(section: Mapping[str, Any]) -> list[str]:
    header = [
        "stage",
        "engine",
        "concurrent",
        "items/request",
        "max batch / wait",
        "req/s on",
        "req/s off",
        "speedup",
        "p50 ms on",
        "p50 ms off",
        "CPU ms/req on (client + replica)",
        "CPU ms/req off",
    ]
    lines = [
        "## Dynamic batching",
        "",
        "One replica driven through a DeploymentHandle; batching switched live.",
        "",
    ]
    lines += _table(header, _batching_rows_md(section["stages"]))
    models = section.get("models")
    if models and "stages" in models:
        lines += ["", f"Random-weight sentence-transformers models ({models['model']}):", ""]
        lines += _table(header, _batching_rows_md(models["stages"]))
        lines.append("")
        for b in models["engine_alone"]:
            lines.append(
                f"- engine alone, {b['stage']}: {b['ms_per_item_one_request']:.2f} ms per item "
                f"{b['request_items']} at a time, {b['ms_per_item_full_batch']:.2f} ms per item "
                f"{b['batch_items']} at a time ({b['gain']:.1f}x)"
            )
    elif models:
        lines += ["", f"Random-weight models: {models.get('skipped')}"]
    return [*lines, ""]


def _retrieval_markdown(section: Mapping[str, Any]) -> list[str]:
    lines = ["## Retrieval", ""]
    rows = []
    for index in section["indexes"]:
        for p in index["points"]:
            rows.append(
                [
                    f"{index['index']} ({index['passages']:,} passages, {index['faiss_factory']})",
                    p["setup"],
                    p["concurrency"],
                    _fig(p, "queries_per_s", 0),
                    _fig(p, "p50_ms", 2),
                    _fig(p, "p99_ms", 2),
                ]
            )
    lines += _table(
        ["index", "how", "clients", "queries/s", "p50 ms per call", "p99 ms per call"], rows
    )
    if section.get("record_data"):
        lines += ["", f"Benchmark of record: {section['record_data']}."]
    return [*lines, ""]


def _scale_markdown(section: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Scale: full RAG request as the index grows",
        "",
        f"Synthetic passages; {section['embedder']}; FAISS {section['faiss_factory']}; "
        f"through the {section['url']}. Memory: resident set of each replica after the load.",
        "",
    ]
    rows = []
    for point in section["points"]:
        memory = point["resident_mib"]
        for p in point["points"]:
            rows.append(
                [
                    f"{point['passages']:,}",
                    f"{point['build_s']:.0f}",
                    f"{point['index_mib']:.0f}",
                    p["concurrency"],
                    _fig(p, "requests_per_s"),
                    _fig(p, "p50_ms"),
                    _fig(p, "p99_ms"),
                    f"{memory.get('Retriever', math.nan):.0f}",
                    f"{sum(memory.values()):.0f}",
                ]
            )
    lines += _table(
        [
            "passages",
            "build s",
            "index MiB",
            "clients",
            "req/s",
            "p50 ms",
            "p99 ms",
            "Retriever RSS MiB",
            "all replicas RSS MiB",
        ],
        rows,
    )
    return [*lines, ""]


# --- plots -----------------------------------------------------------------------------


def plots(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """PNG plots of the sections present; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    env = results["environment"]
    caption = f"{env['machine']['cpus']} CPUs, load {_load(env['load_average'].get('before'))}"
    written: list[Path] = []
    if "overhead" in results:
        written.append(
            _plot_concurrency(
                results["overhead"],
                ("p50_ms", "p99_ms"),
                "latency (ms)",
                out_dir / "latency_vs_concurrency.png",
                caption,
            )
        )
        written.append(
            _plot_concurrency(
                results["overhead"],
                ("requests_per_s",),
                "requests per second",
                out_dir / "throughput_vs_concurrency.png",
                caption,
            )
        )
    if "streaming" in results:
        written.append(_plot_ttft(results["streaming"], out_dir / "ttft.png", caption))
    if results.get("scale", {}).get("points"):
        written.append(_plot_scale(results["scale"], out_dir / "scale.png", caption))
    return written


def _plot_concurrency(
    section: Mapping[str, Any], metrics: Sequence[str], ylabel: str, path: Path, caption: str
) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for setup in section["setups"]:
        points = sorted(
            (p for p in section["points"] if p["setup"] == setup), key=lambda p: p["concurrency"]
        )
        xs = [p["concurrency"] for p in points]
        for metric in metrics:
            ys = [p[metric]["median"] for p in points]
            spread = [
                [p[metric]["median"] - p[metric]["min"] for p in points],
                [p[metric]["max"] - p[metric]["median"] for p in points],
            ]
            label = setup if len(metrics) == 1 else f"{setup}, {metric.removesuffix('_ms')}"
            style = "--" if metric == "p99_ms" else "-"
            ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label=label, linestyle=style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({p["concurrency"] for p in section["points"]}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    if len(metrics) > 1:
        ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel(ylabel)
    ax.set_title(f"Full RAG request: graph and single process ({caption})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_ttft(section: Mapping[str, Any], path: Path, caption: str) -> Path:
    import matplotlib.pyplot as plt

    points = section["points"]
    levels = sorted({p["concurrency"] for p in points})
    setups = list(dict.fromkeys(p["setup"] for p in points))
    table = _by(points)
    width = 0.8 / len(setups)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, setup in enumerate(setups):
        ys = [
            table[(setup, level)]["ttft_p50_ms"]["median"] if (setup, level) in table else 0
            for level in levels
        ]
        ax.bar([j + i * width for j in range(len(levels))], ys, width, label=setup)
    ax.set_xticks([j + width * (len(setups) - 1) / 2 for j in range(len(levels))])
    ax.set_xticklabels([f"{level} clients" for level in levels])
    ax.set_ylabel("time to first token, p50 (ms)")
    ax.set_yscale("log")
    ax.set_title(f"Streaming: time to first token ({caption})", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_scale(section: Mapping[str, Any], path: Path, caption: str) -> Path:
    import matplotlib.pyplot as plt

    points = section["points"]
    xs = [p["passages"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for level in sorted({q["concurrency"] for p in points for q in p["points"]}):
        ys = [
            next(q for q in p["points"] if q["concurrency"] == level)["p50_ms"]["median"]
            for p in points
        ]
        left.plot(xs, ys, marker="o", label=f"p50, {level} client(s)")
    left.set_ylabel("latency of the full request (ms)")
    right.plot(
        xs,
        [p["resident_mib"].get("Retriever", 0) for p in points],
        marker="o",
        label="Retriever RSS",
    )
    right.plot(xs, [p["index_mib"] for p in points], marker="s", label="index on disk")
    right.set_ylabel("MiB")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("passages")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Cost against index size (FAISS {section['faiss_factory']}; {caption})", fontsize=9
    )
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
