"""jarag: build and inspect indexes, and measure retrieval and answer quality."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from deployments.retriever.index_format import InvalidIndexError
from serve.commands import eval as eval_commands
from serve.commands import index as index_commands
from serve.config_file import ConfigFileError
from serve.corpus import CorpusError

COMMAND_GROUPS = (index_commands, eval_commands)
"""Each module registers its subcommands with ``register(subparsers)``."""

_USER_ERRORS = (
    ConfigFileError,
    CorpusError,
    InvalidIndexError,
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
