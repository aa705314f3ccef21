"""The data-loader workload: samples/s and MiB/s of torch's DataLoader over record shards.

    emberfs bench --workloads loader [--loader-sizes 1K,16K,256K] [--loader-mib 64]
                  [--loader-workers 2] [--loader-batch 64]

Per sample size, `loader_mib` MiB of random samples of exactly that size are packed into
`loader_shards` record shards (`emberfs.client.data.encode_shard`) and stored in every
EmberFS cluster of the run and on local disk. Then one process, started once (torch
takes seconds to import), runs for each (sample size, system) one shuffled pass of

    DataLoader(RecordDataset(source, shards), batch_size=B, shuffle=True, num_workers=W)

with persistent "fork" workers: a warm-up (every worker started and connected, the
prefetch queues drained once), then batches, across epochs if need be, for `--seconds`
(at least one batch). The loader runs in its own process because the harness holds
grpc.aio channels, which a forked worker must not inherit. Every sample is CRC-checked
by the dataset and its size compared. A row's figure is MiB/s; its `ops` are samples
(samples/s in the loader table), `in_flight` the workers, the latencies batch waits.
Client CPU is the loader process and its workers; server CPU the cluster's processes.

Each cluster is read through the run's first transport (`Client(transport=...)` via the
dataset's client_options), with the clients' event loop the cluster's servers run (the
loader process sets that loop's policy before it builds the run's DataLoader, so the
dataset's SyncClients in the forked workers make loops of that kind).

Without torch the rows say how to install it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .measure import EMBERFS, LOCAL, MIBS, Row, Sample, proc_cpu_seconds, progress
from .workloads import size_label

__all__ = ["LOADER_PREFIX", "LOCAL_FILES", "loader_name", "loader_rows"]

LOADER_PREFIX = "loader "
LOCAL_FILES = "local files"
_RUN_TIMEOUT_S = 600.0  # the whole loader process; each phase is bounded by --seconds
_BATCH_TIMEOUT_S = 120.0


def loader_name(sample_size: int) -> str:
    return f"{LOADER_PREFIX}{size_label(sample_size)}"


def _samples(sample_size: int, total: int) -> list[bytes]:
    count = max(1, total // sample_size)
    blob = os.urandom(count * sample_size)
    return [blob[i * sample_size:(i + 1) * sample_size] for i in range(count)]


def _shards(samples: list[bytes], shards: int) -> list[bytes]:
    from emberfs.client.data import encode_shard

    shards = min(shards, len(samples))
    return [encode_shard(samples[len(samples) * k // shards:len(samples) * (k + 1) // shards]) for k in range(shards)]


async def loader_rows(clusters: Sequence[Any], root: Path, config: Any) -> list[Row]:
    """The loader workload for every cluster and local files (the harness side)."""
    detail = f"DataLoader batch {config.loader_batch}, {config.loader_workers} workers, shuffled"
    transport = config.transports[0]
    missing: list[Row] = []
    if importlib.util.find_spec("torch") is None:
        why = "torch not installed (pip install 'emberfs[torch]')"
        return [Row.missing(loader_name(s), config.loader_workers, system, role, MIBS, why)
                for s in config.loader_sizes
                for system, role in [*((c.system_for(transport), EMBERFS) for c in clusters), (LOCAL_FILES, LOCAL)]]
    runs: list[dict[str, Any]] = []
    for size in config.loader_sizes:
        progress(f"{loader_name(size)}: writing {config.loader_mib} MiB of samples as record shards")
        shards = _shards(_samples(size, config.loader_mib << 20), config.loader_shards)
        local_dir = root / "loader" / size_label(size).replace(" ", "")
        local_dir.mkdir(parents=True, exist_ok=True)
        names = [f"shard-{k:05d}.rec" for k in range(len(shards))]
        for name, data in zip(names, shards, strict=True):
            (local_dir / name).write_bytes(data)
        for cluster in clusters:
            system = cluster.system_for(transport)
            if cluster.unavailable:
                missing.append(Row.missing(loader_name(size), config.loader_workers, system, EMBERFS, MIBS,
                                           cluster.unavailable, transport=transport, event_loop=cluster.event_loop))
                continue
            directory = f"/loader/{size}"
            await cluster.run(_store(cluster.client(transport), directory, names, shards))
            runs.append({"workload": loader_name(size), "system": system, "role": EMBERFS,
                         "source": cluster.cluster.meta_address, "paths": [f"{directory}/{n}" for n in names],
                         "server_pids": cluster.server_pids(), "sample_size": size, "transport": transport,
                         "event_loop": cluster.event_loop})
        runs.append({"workload": loader_name(size), "system": LOCAL_FILES, "role": LOCAL, "source": None,
                     "paths": [str(local_dir / n) for n in names], "server_pids": None, "sample_size": size,
                     "transport": "", "event_loop": ""})
    spec = {"runs": runs, "batch": config.loader_batch, "workers": config.loader_workers,
            "seconds": config.seconds, "seed": config.seed, "detail": detail}
    spec_path = root / "loader" / "spec.json"
    spec_path.write_text(json.dumps(spec))
    return missing + await _run_loader_process(spec_path, runs, config.loader_workers)


async def _store(fs: Any, directory: str, names: Sequence[str], shards: Sequence[bytes]) -> None:
    """Write the shards through one cluster's client (run on that client's loop)."""
    await fs.makedirs(directory, exist_ok=True)
    for name, data in zip(names, shards, strict=True):
        await fs.write_file(f"{directory}/{name}", data)


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
        return [Row.missing(r["workload"], workers, r["system"], r["role"], MIBS, why, transport=r["transport"],
                            event_loop=r["event_loop"]) for r in runs]
    return [Row(**fields) for fields in json.loads(out)]


# -- the loader process -----------------------------------------------------------------


def _cpu_seconds(worker_pids: Sequence[int]) -> float:
    """This process's CPU seconds and its DataLoader workers' (from /proc)."""
    return time.process_time() + sum(proc_cpu_seconds(p) for p in worker_pids)


class _Epochs:
    """A DataLoader's batches without end, each checked for the sample size: past an
    epoch's last batch, the next epoch on the same (persistent) workers. `iterator` is
    the one those workers belong to."""

    def __init__(self, loader: Any, size: int, system: str) -> None:
        self.loader, self.size, self.system = loader, size, system
        self.iterator = iter(loader)

    def __next__(self) -> list[bytes]:
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            batch = next(self.iterator)
        if any(len(s) != self.size for s in batch):
            raise RuntimeError(f"{self.system}: a sample of {size_label(self.size)} came back another size")
        return batch


def _measure(run: dict[str, Any], spec: dict[str, Any]) -> Row:
    import torch
    from torch.utils.data import DataLoader

    from emberfs.client.data import LocalFiles
    from emberfs.client.datasets import RecordDataset

    size, workers = run["sample_size"], spec["workers"]
    _use_event_loop(run["event_loop"])
    if run["source"]:
        ds = RecordDataset(run["source"], run["paths"], client_options={"transport": run["transport"]})
    else:
        ds = RecordDataset(LocalFiles(), run["paths"])
    n = len(ds)
    loader = DataLoader(ds, batch_size=spec["batch"], shuffle=True, num_workers=workers,
                        multiprocessing_context="fork" if workers else None, persistent_workers=workers > 0,
                        timeout=_BATCH_TIMEOUT_S if workers else 0,
                        generator=torch.Generator().manual_seed(spec["seed"]))
    epochs = _Epochs(loader, size, run["system"])

    # Warm up: every worker started, connected, and its prefetch queue drained once.
    for _ in range(min(3 * max(workers, 1), len(loader))):
        next(epochs)
    worker_pids = [w.pid for w in getattr(epochs.iterator, "_workers", [])]
    pids = run["server_pids"]
    servers0 = None if pids is None else sum(proc_cpu_seconds(p) for p in pids)
    cpu0 = _cpu_seconds(worker_pids)
    samples, latencies = 0, list[float]()
    start = time.perf_counter()
    deadline = start + spec["seconds"]
    while not latencies or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        samples += len(next(epochs))
        latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds(worker_pids) - cpu0
    servers = None if pids is None else max(sum(proc_cpu_seconds(p) for p in pids) - (servers0 or 0.0), 0.0)
    shutdown = getattr(epochs.iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    del epochs, loader
    sample = Sample(samples, samples * size, seconds, cpu, servers, latencies)
    row = Row.of(run["workload"], workers, run["system"], run["role"], MIBS, sample,
                 detail=f"{spec['detail']}, {samples} samples of a {n}-sample dataset",
                 transport=run["transport"], event_loop=run["event_loop"])
    progress(f"{row.describe()}  {samples / seconds:.0f} samples/s")
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
    rows = []
    for run in spec["runs"]:
        try:
            rows.append(_measure(run, spec))
        except Exception as exc:  # one failing system is reported, the others still run
            progress(f"{run['system']} failed in {run['workload']}: {exc!r}")
            rows.append(Row.missing(run["workload"], spec["workers"], run["system"], run["role"], MIBS,
                                    f"failed: {exc!r}", transport=run["transport"], event_loop=run["event_loop"]))
    json.dump([{k: v for k, v in r.as_dict().items() if k in Row.__dataclass_fields__} for r in rows], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
