"""The registry of `emberfs` subcommands.

Each module contributes a `COMMANDS` tuple of `Command`s; adding a subcommand (put,
get, cat, cluster, local-cluster, bench) means writing one small module and naming
it here. `emberfs.client.cli` builds its parser from this tuple alone.
"""

from __future__ import annotations

from . import attrs, bench, cluster, df, health, listing, localcluster, names, pack, transfer
from ._base import CliContext, Command, error_line

__all__ = ["COMMANDS", "CliContext", "Command", "error_line"]

COMMANDS: tuple[Command, ...] = (
    *listing.COMMANDS,
    *names.COMMANDS,
    *attrs.COMMANDS,
    *cluster.COMMANDS,
    *health.COMMANDS,
    *localcluster.COMMANDS,
    *transfer.COMMANDS,
    *pack.COMMANDS,
    *df.COMMANDS,
    *bench.COMMANDS,
)
