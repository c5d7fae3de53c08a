"""Options and helpers shared by the ``jarag`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from serve.config import AppConfig
from serve.config_file import load_app_config


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="Serve config whose stage settings to use (default: the built-in stages)",
    )
    parser.add_argument("--app", help="application name in --config, if it has several")


def app_config(args: argparse.Namespace) -> AppConfig:
    """The application settings named by --config, or the built-in defaults."""
    if args.config is None:
        return AppConfig.model_validate({"index": {"path": "."}})
    return load_app_config(args.config, args.app)
