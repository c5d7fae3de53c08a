"""``jarag cluster``: the KubeRay manifests and the Grafana dashboard, from a Serve config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serve.ops import kuberay


def register(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster", help="generate what runs the graph on KubeRay (cluster/)"
    )
    what = cluster.add_subparsers(required=True, metavar="WHAT")
    printers = {
        "serve-config": "the Serve config as a cluster runs it (proxies on every interface, "
        "the index path under the image's working directory), for serve deploy",
        "rayservice": "the RayService: serveConfigV2 from the Serve config, head, CPU and "
        "GPU worker groups sized by its replicas, GCS fault tolerance",
        "storage": "the shared volume (index, model cache, corpus)",
        "index-job": "the Job that downloads the models and builds the index onto the volume",
        "monitoring": "the Prometheus Operator PodMonitor for every Ray pod",
        "grafana": "the Grafana dashboard (JSON)",
    }
    for name, help_text in printers.items():
        parser = what.add_parser(name, help=f"print {help_text}")
        _config_option(parser)
        parser.set_defaults(run=_print, which=name)
    generate = what.add_parser(
        "generate",
        help="write every generated file under --out (or, with --check, fail if one differs)",
    )
    _config_option(generate)
    generate.add_argument("--out", type=Path, default=Path("cluster"), help="directory")
    generate.add_argument(
        "--check", action="store_true", help="compare, write nothing; exit 1 on a difference"
    )
    generate.set_defaults(run=_generate)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--serve-config",
        type=Path,
        default=Path("serve_config.yaml"),
        help="the Serve config to embed (default: serve_config.yaml)",
    )


_FILES = {
    "serve-config": "serve_config.cluster.yaml",
    "rayservice": "rayservice.yaml",
    "storage": "storage.yaml",
    "index-job": "index-build-job.yaml",
    "monitoring": "monitoring.yaml",
    "grafana": "grafana/ja-rag-serve.json",
}


def _print(args: argparse.Namespace) -> int:
    render = kuberay.generated_files(args.serve_config)[_FILES[args.which]]
    sys.stdout.write(render())
    return 0


def _generate(args: argparse.Namespace) -> int:
    stale = []
    for relative, render in kuberay.generated_files(args.serve_config).items():
        path = args.out / relative
        text = render()
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print("out of date (run `jarag cluster generate`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
