"""`emberfs.bench`: the benchmark harness (`emberfs bench`, `python -m emberfs.bench`).

    harness.py    one run: clusters and baselines up, phases in order, everything stopped
    cluster.py    EmberFS under test (a LocalCluster per chunk size and event loop, Clients)
    workloads.py  the data workloads and offset lists every system shares
    meta.py       metadata ops/s with their gRPC-health and LMDB baselines
    baselines/    page cache and local disk, raw asyncio socket, nginx (aiohttp, and
                  httpranges.py: the shards over HTTP as a RangeReader)
    dataloader.py one cold DataLoader epoch per row: EmberFS, local files and nginx
    loaderdata.py its dataset: numbered samples of random sizes in record shards
    epoch.py      one timed, checked epoch (also run by scripts/demo.py)
    coldcache.py  the page cache emptied before each epoch
    measure.py    bounded timing, CPU from /proc, the `Row` record
    report.py     table, goals, JSON and PNG
    options.py    `BenchConfig` and the command-line options

This module imports nothing heavy, so the CLI can build its parser cheaply. The run's
own loop is EMBERFS_EVENT_LOOP's (`emberfs.common.eventloop.run`, as `emberfs bench`
does): the baselines' clients run on it; EmberFS clients run on their cluster's loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from .options import add_arguments, config_from_args

    parser = argparse.ArgumentParser(prog="python -m emberfs.bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    config = config_from_args(parser.parse_args(argv))
    from emberfs.common import eventloop

    from .harness import run

    try:
        return eventloop.run(run(config))
    except KeyboardInterrupt:
        return 130
