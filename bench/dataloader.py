"""The data-loader workload: one shuffled epoch per row, EmberFS beside local files and nginx.

    emberfs bench --workloads loader [--loader-sizes 4K-28K] [--loader-mib 1024]
                  [--loader-shards 16] [--loader-cache-mib N] [--loader-workers 2]
                  [--loader-batch 64]

Per sample-size range, a dataset of about `--loader-mib` MiB of samples of uniformly
random sizes (loaderdata.py) is written as record shards to local disk and, through
concurrent `write_file` calls, into every cluster of the run; nginx serves the local
copy. Then one process, started once (torch takes seconds to import, and the harness
holds grpc.aio channels that a forked DataLoader worker must not inherit), runs one
epoch per row with the page cache emptied first (epoch.py), in this order:

    local files, random order            RecordDataset(LocalFiles()) + DataLoader(shuffle=True)
    emberfs ..., block-shuffled          IterableRecordDataset(shuffle=True)  goal >= 0.8x the above
    emberfs ..., random order            RecordDataset + DataLoader(shuffle=True)  goal >= 0.4x
    local files, block-shuffled          informational
    nginx + http.client, block-shuffled  the peer (IterableRecordDataset over HttpRangeReader)

DataLoader(batch_size=B, num_workers=W) with "fork" workers, the datasets' default
`cache_bytes` unless `--loader-cache-mib`; the time runs from building the dataset to
the last batch, worker start included. Every sample is CRC-checked by the dataset, and
the epoch's samples are counted and told apart (each exactly once, whole). A row's
figure is MiB/s, its `ops` the samples (samples/s in the loader table), `in_flight` the
workers, its latencies the waits for batches, its `api` the order. Client CPU is the
loader process and its workers, server CPU the cluster's processes or nginx's.

Each cluster is read through the run's first transport with the event loop its servers
run (the loader process sets that loop's policy before it builds the run's DataLoader,
so the dataset's SyncClients in the forked workers make loops of that kind).

Without torch the rows say how to install it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .baselines.nginx import NginxServer, install_nginx
from .epoch import BLOCK, RANDOM, Source, run_epoch
from .loaderdata import DatasetSpec, store_dataset
from .measure import EMBERFS, LOCAL, MIBS, PEER, Row, Sample, child_pids, progress

__all__ = ["LOADER_PREFIX", "LOCAL_FILES", "NGINX", "loader_name", "loader_rows"]

LOADER_PREFIX = "loader "
LOCAL_FILES = "local files"
NGINX = "nginx + http.client"
_RUN_TIMEOUT_S = 3600.0  # the whole loader process: epochs of a GiB on a slow, busy machine
_STORE_IN_FLIGHT = 4  # shards written at once
_PROGRESS_EVERY_S = 3.0


def loader_name(spec: DatasetSpec) -> str:
    return f"{LOADER_PREFIX}{spec.label}"


def _datasets(config: Any) -> list[DatasetSpec]:
    return [DatasetSpec.of_bytes(config.loader_mib << 20, lo, hi, config.loader_shards, config.seed)
            for lo, hi in config.loader_sizes]


def _systems(clusters: Sequence[Any], transport: str) -> list[tuple[str, str, str, Any]]:
    """(system, role, order, cluster or None) of every row of one dataset, in the order they run."""
    mine = [(f"{c.system_for(transport)}, {order}", EMBERFS, order, c) for c in clusters for order in (BLOCK, RANDOM)]
    return [(f"{LOCAL_FILES}, {RANDOM}", LOCAL, RANDOM, None), *mine, (f"{LOCAL_FILES}, {BLOCK}", LOCAL, BLOCK, None),
            (f"{NGINX}, {BLOCK}", PEER, BLOCK, None)]


async def loader_rows(clusters: Sequence[Any], root: Path, config: Any) -> list[Row]:
    """The loader workload for every cluster, local files and nginx (the harness side)."""
    transport = config.transports[0]
    datasets = _datasets(config)
    if importlib.util.find_spec("torch") is None:
        why = "torch not installed (pip install 'emberfs[torch]')"
        return [Row.missing(loader_name(d), config.loader_workers, system, role, MIBS, why, api=order)
                for d in datasets for system, role, order, _ in _systems(clusters, transport)]
    data_root = root / "loader"
    nginx = NginxServer(root / "loader-nginx", data_root)
    try:
        missing, runs = [], []
        for spec in datasets:
            missing_rows, spec_runs = await _store(spec, clusters, data_root, transport, config.loader_workers)
            missing += missing_rows
            runs += spec_runs
        why = "" if config.no_install else await asyncio.to_thread(install_nginx, progress)
        why = why or await asyncio.to_thread(nginx.start)
        if why:
            progress(f"nginx for the loader rows unavailable: {why}")
        for run in runs:
            if run["role"] == PEER:
                run["unavailable"] = why
                run["source"]["address"] = nginx.url
                run["server_pids"] = nginx.pids()[:1]  # the master: its workers are found when measured
        process_spec = {
            "runs": runs, "batch": config.loader_batch, "workers": config.loader_workers, "seed": config.seed,
            "cache_bytes": None if config.loader_cache_mib is None else config.loader_cache_mib << 20,
            "cold_dirs": [str(data_root), *(str(c.cluster.data_dir) for c in clusters)],
            "datasets": {loader_name(d): [d.samples, d.min_size, d.max_size, d.shards, d.seed] for d in datasets},
        }
        spec_path = data_root / "spec.json"
        spec_path.write_text(json.dumps(process_spec))
        return missing + await _run_loader_process(spec_path, runs, config.loader_workers)
    finally:
        nginx.stop()


async def _store(spec: DatasetSpec, clusters: Sequence[Any], data_root: Path, transport: str,
                 workers: int) -> tuple[list[Row], list[dict[str, Any]]]:
    """Write one dataset everywhere; (rows of clusters that cannot run, the runs)."""
    workload = loader_name(spec)
    directory = spec.label.replace(" ", "")
    remote = f"/loader/{directory}"
    ready = [c for c in clusters if not c.unavailable]
    for cluster in ready:
        await cluster.run(cluster.client(transport).makedirs(remote, exist_ok=True))
    writers = [functools.partial(_cluster_write, c, transport) for c in ready]
    progress(f"{workload}: writing {spec.samples} samples ({spec.sample_bytes / (1 << 20):.0f} MiB) as "
             f"{spec.shards} record shards to local disk and {len(ready)} cluster(s), {_STORE_IN_FLIGHT} at once")
    started = time.perf_counter()
    shown = [started]

    def report(stored: int, total: int) -> None:
        now = time.perf_counter()
        if stored == total or now - shown[0] >= _PROGRESS_EVERY_S:
            shown[0] = now
            progress(f"{workload}: {stored >> 20} / {total >> 20} MiB stored "
                     f"({stored / (1 << 20) / (now - started):.1f} MiB/s)")

    names = await asyncio.to_thread(store_dataset, spec, data_root / directory, remote, writers,
                                    in_flight=_STORE_IN_FLIGHT, report=report)
    local_paths = [str(data_root / directory / n) for n in names]
    missing, runs = [], []
    for system, role, order, cluster in _systems(clusters, transport):
        run: dict[str, Any] = {"workload": workload, "system": system, "role": role, "order": order,
                               "transport": "", "event_loop": "", "server_pids": None, "unavailable": ""}
        if role == LOCAL:
            run |= {"source": {"kind": "local"}, "paths": local_paths}
        elif role == PEER:
            run |= {"source": {"kind": "http"}, "paths": [f"/{directory}/{n}" for n in names]}
        elif cluster.unavailable:
            missing.append(Row.missing(workload, workers, system, role, MIBS, cluster.unavailable,
                                       transport=transport, event_loop=cluster.event_loop, api=order))
            continue
        else:
            run |= {"source": {"kind": "emberfs", "address": cluster.cluster.meta_address,
                               "client_options": _client_options(cluster, transport)},
                    "paths": [f"{remote}/{n}" for n in names], "server_pids": cluster.server_pids(),
                    "transport": transport, "event_loop": cluster.event_loop}
        runs.append(run)
    return missing, runs


def _cluster_write(cluster: Any, transport: str, path: str, data: bytes) -> None:
    """One shard into a cluster, from a store thread, on the cluster's client loop."""
    cluster.loop.call(cluster.client(transport).write_file(path, data))


def _client_options(cluster: Any, transport: str) -> dict[str, Any]:
    """The dataset's SyncClient options: the transport; with tokens, the admin token as root."""
    admin = cluster.cluster.admin_token
    options: dict[str, Any] = {"transport": transport}
    if admin is not None:
        options |= {"token": admin, "uid": 0, "gid": 0, "groups": []}
    return options


async def _run_loader_process(spec_path: Path, runs: list[dict[str, Any]], workers: int) -> list[Row]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emberfs.bench.dataloader", str(spec_path), stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), _RUN_TIMEOUT_S)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        why = f"the loader process exited with {proc.returncode} (its stderr is above)"
        return [_missing(r, workers, why) for r in runs]
    return [Row(**fields) for fields in json.loads(out)]


def _missing(run: dict[str, Any], workers: int, why: str) -> Row:
    return Row.missing(run["workload"], workers, run["system"], run["role"], MIBS, why, transport=run["transport"],
                       event_loop=run["event_loop"], api=run["order"])


# -- the loader process -----------------------------------------------------------------


def _measure(run: dict[str, Any], spec: dict[str, Any], dataset: DatasetSpec) -> Row:
    _use_event_loop(run["event_loop"])
    pids = run["server_pids"]
    if run["role"] == PEER and pids:  # nginx forks its workers after its port opens: look them up now
        pids = [*pids, *child_pids(pids[0])]
    result = run_epoch(Source(**run["source"]), run["paths"], run["order"], dataset.sizes, batch=spec["batch"],
                       workers=spec["workers"], seed=spec["seed"], cache_bytes=spec["cache_bytes"],
                       cold_dirs=[Path(d) for d in spec["cold_dirs"]],
                       server_pids=None if pids is None else lambda: pids)
    sample = Sample(result.samples, result.nbytes, result.seconds, result.cpu_client_s, result.cpu_server_s,
                    result.batch_waits)
    cache = "default cache_bytes" if spec["cache_bytes"] is None else f"cache_bytes {spec['cache_bytes'] >> 20} MiB"
    detail = (f"one epoch of {result.samples} samples ({result.nbytes / (1 << 20):.0f} MiB) in {dataset.shards} "
              f"shards, DataLoader batch {spec['batch']}, {spec['workers']} workers, {cache}, {result.cold}; "
              f"first batch after {result.first_batch_s:.2f} s")
    row = Row.of(run["workload"], spec["workers"], run["system"], run["role"], MIBS, sample, detail=detail,
                 transport=run["transport"], event_loop=run["event_loop"], api=run["order"])
    progress(f"{row.describe()}  {result.samples / result.seconds:.0f} samples/s")
    return row


def _use_event_loop(name: str) -> None:
    """New loops of this process (and of workers forked from it) are of this kind: the
    dataset's SyncClient makes its loop with asyncio.new_event_loop()."""
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emberfs.bench.dataloader",
                                     description="the loader process of `emberfs bench --workloads loader`")
    parser.add_argument("spec", type=Path, help="the JSON run list the harness wrote")
    spec = json.loads(parser.parse_args(argv).spec.read_text())
    datasets = {name: DatasetSpec(*fields) for name, fields in spec["datasets"].items()}
    rows = []
    for run in spec["runs"]:
        if run["unavailable"]:
            rows.append(_missing(run, spec["workers"], run["unavailable"]))
            continue
        try:
            rows.append(_measure(run, spec, datasets[run["workload"]]))
        except Exception as exc:  # one failing system is reported, the others still run
            progress(f"{run['system']} failed in {run['workload']}: {exc!r}")
            rows.append(_missing(run, spec["workers"], f"failed: {exc!r}"))
    json.dump([{k: v for k, v in r.as_dict().items() if k in Row.__dataclass_fields__} for r in rows], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
