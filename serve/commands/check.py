"""``jarag check``: will this Serve config deploy on the running cluster?"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from serve.ops.preflight import check, format_report


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "check",
        help="validate a Serve config and check that the running Ray cluster can hold it",
        description="Validates the config (Ray Serve's schema and the application's args), "
        "cross-checks its sections, connects to the running Ray cluster and packs the "
        "replicas (initial or minimum counts) onto its nodes: CPUs, memory and fractional "
        "GPUs per physical GPU. Exits 1 when the config would not deploy.",
    )
    parser.add_argument("config", type=Path, help="Serve config file, e.g. serve_config.yaml")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: RAY_ADDRESS, else the local cluster: 'auto')",
    )
    parser.add_argument("--app", help="only this application of the config")
    parser.add_argument(
        "--no-cluster", action="store_true", help="check the file only, do not connect to Ray"
    )
    parser.add_argument(
        "--cluster-autoscales",
        action="store_true",
        help="the cluster adds nodes on demand (KubeRay autoscaling): replicas that do not fit "
        "now are warnings, not errors",
    )
    parser.set_defaults(run=_check)


def _check(args: argparse.Namespace) -> int:
    report = check(
        args.config,
        address=args.address,
        app_name=args.app,
        connect=not args.no_cluster,
        cluster_autoscales=args.cluster_autoscales,
    )
    print(format_report(report))
    return 0 if report.ok else 1
