"""jarag: build and inspect indexes, measure quality and speed, check a Serve config,
generate the cluster files and the configuration reference."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from deployments.extras import MissingDependencyError
from deployments.index.format import InvalidIndexError
from serve.commands import bench as bench_commands
from serve.commands import check as check_commands
from serve.commands import cluster as cluster_commands
from serve.commands import config as config_commands
from serve.commands import eval as eval_commands
from serve.commands import index as index_commands
from serve.config_file import ConfigFileError
from serve.indexing.corpus import CorpusError

COMMAND_GROUPS = (
    index_commands,
    eval_commands,
    check_commands,
    bench_commands,
    cluster_commands,
    config_commands,
)
"""Each module registers its subcommands with ``register(subparsers)``."""

_USER_ERRORS = (
    ConfigFileError,
    CorpusError,
    InvalidIndexError,
    MissingDependencyError,
    FileNotFoundError,
    ValidationError,
    ValueError,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jarag", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except _USER_ERRORS as error:
        print(f"jarag: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jarag: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
