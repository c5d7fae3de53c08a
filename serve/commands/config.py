"""``jarag config``: the configuration reference page, generated from the typed config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serve.ops import config_reference


def register(commands: Any) -> None:
    config = commands.add_parser("config", help="document the application's configuration")
    what = config.add_subparsers(required=True, metavar="WHAT")
    reference = what.add_parser(
        "reference",
        help="write the configuration reference (every field of the args: block, a section "
        "per stage and per backend) generated from the pydantic models; with --check, fail "
        "if the page differs",
    )
    reference.add_argument(
        "--out",
        type=Path,
        default=config_reference.PAGE,
        help=f"the page to write (default: {config_reference.PAGE})",
    )
    reference.add_argument(
        "--check", action="store_true", help="compare, write nothing; exit 1 on a difference"
    )
    reference.set_defaults(run=_reference)


def _reference(args: argparse.Namespace) -> int:
    page: Path = args.out
    if args.check:
        if config_reference.stale(page):
            print(f"out of date (run `{config_reference.COMMAND}`): {page}", file=sys.stderr)
            return 1
        return 0
    if config_reference.write(page):
        print(f"wrote {page}")
    return 0
