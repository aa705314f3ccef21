"""`emberfs bench`: the benchmark harness (`emberfs.bench`) on a local cluster it starts.

It does not use `--meta`: the run starts its own clusters and baselines in a temporary
directory and stops them before it returns. Options: `emberfs bench --help`.
"""

from __future__ import annotations

import argparse
import sys

from emberfs.bench.options import add_arguments, config_from_args

from .._launch import ServerStartError
from ._base import CliContext, Command

__all__ = ["COMMANDS"]


async def _run(ctx: CliContext, args: argparse.Namespace) -> int:
    from emberfs.bench.harness import run

    try:
        return await run(config_from_args(args), out=ctx.out)
    except ServerStartError as exc:
        print(f"emberfs: bench: a server did not start: {exc}", file=sys.stderr)
        return 1
    except (ConnectionError, TimeoutError) as exc:  # not about --meta: the run's own cluster
        print(f"emberfs: bench: the benchmark's local cluster failed: {exc!r}", file=sys.stderr)
        return 1


COMMANDS = (
    Command("bench", "measure a local cluster against page cache, raw socket and nginx", add_arguments, _run),
)
