"""The ``jarag`` subcommands, one module per command group."""
