"""`emberfs.bench`: the benchmark harness (`emberfs bench`, `python -m emberfs.bench`).

    harness.py    one run: clusters and baselines up, phases in order, everything stopped
    cluster.py    EmberFS under test (a LocalCluster per chunk size, the public Client)
    workloads.py  the data workloads and offset lists every system shares
    meta.py       metadata ops/s with their gRPC-health and LMDB baselines
    baselines/    page cache and local disk, raw asyncio socket, nginx + aiohttp
    dataloader.py torch DataLoader over record shards, EmberFS against local files
    measure.py    bounded timing, CPU from /proc, the `Row` record
    report.py     table, JSON and PNG
    options.py    `BenchConfig` and the command-line options

This module imports nothing heavy, so the CLI can build its parser cheaply.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from .options import add_arguments, config_from_args

    parser = argparse.ArgumentParser(prog="python -m emberfs.bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    config = config_from_args(parser.parse_args(argv))
    from .harness import run

    try:
        return asyncio.run(run(config))
    except KeyboardInterrupt:
        return 130
