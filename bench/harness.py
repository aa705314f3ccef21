"""One benchmark run: EmberFS and its baselines, side by side, on the same bytes.

    emberfs bench [--size-mib 256] [--chunk-size 1M,4M] [--transports bulk,grpc]
                  [--event-loops asyncio,uvloop] [--quick] [--json F] [--plot F]
    python -m emberfs.bench ...            (the same options)

In a temporary directory: one random file of `--size-mib` MiB on local disk, one
`LocalCluster` per (chunk size, event loop) (N nodes, R replicas, all up at once so
their phases interleave), a raw-socket range server and nginx on 127.0.0.1. Then, in
order:

  seq write   write_file of the file into each cluster | local disk, one copy per replica
  seq read    read_into one preallocated buffer (the headline), and read_file, from each
              cluster | page cache, raw socket, nginx (pieces in flight, into one buffer)
  rand read   per read size and depth: read_range and pread on each cluster | the same
              offsets from each baseline
  meta        mkdir, create, stat on the first cluster | gRPC health, LMDB
  loader      per sample-size range (4-28 KiB): one cold, shuffled DataLoader epoch over
              record shards in each cluster, block-shuffled and in random order | the same
              shards on local disk, both ways, and from nginx (dataloader.py)

Transports (`--transports`, default bulk,grpc): the first one listed runs every workload
above; each other one runs seq write, seq read through read_into and random reads
through read_range: the rows that compare the data channels, while read_file, pread
and the loader, which would only repeat that comparison, stay on the first, so a
default run costs one seq write, one seq read and the random phases more, not twice
the run. Every EmberFS row's system names its transport ("emberfs 4 MiB chunks, bulk").

Event loops (`--event-loops`, default asyncio; uvloop needs `emberfs[fast]`, and
without it its rows say so): a server's loop is fixed when its process starts, so each
loop gets clusters of its own, started with EMBERFS_EVENT_LOOP set, and their clients
run on a loop of the same kind on a thread of this process (cluster.py); the data
loader's clients too (dataloader.py). The baselines' clients run on the harness's own
loop, EMBERFS_EVENT_LOOP's (`python -m emberfs.bench` and `emberfs bench` both start it
with `emberfs.common.eventloop.run`). Rows name the loop when it is not only asyncio.

After the table, the goals of issues 8 and 17 (report.py `goals`), each with the
measured ratio and PASS or MISS: seq read against nginx and the raw socket, 64 KiB
random reads with 32 in flight against nginx, the data loader's epochs against local
files, and the seq write beside the seq read, CPU per GiB repeated for the seq read.

Phases are bounded by `--ops` and `--seconds`. Progress goes to stderr, the table to
stdout; `--json` keeps everything, `--plot` draws it. Every process started here is
stopped before the run returns, whether it succeeded or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .baselines.nginx import NginxSource, install_nginx, nginx_version
from .baselines.pagecache import PageCacheSource, local_write
from .baselines.rawsocket import RawSocketSource
from .cluster import EmberCluster
from .dataloader import loader_rows
from .measure import EMBERFS, MIB, MIBS, Row, progress
from .meta import emberfs_meta, health_meta, lmdb_meta
from .options import BenchConfig
from .report import goals, loader_summary, ratios, render_goals, render_table, write_json, write_plot
from .workloads import (
    SEQ_READ, SEQ_WRITE, RangeSource, rand_name, random_offsets, size_label, source_random_read, source_seq_read,
)

__all__ = ["run"]


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="emberfs-bench-") as tmp:
        yield Path(tmp)


async def run(config: BenchConfig, out: TextIO = sys.stdout) -> int:
    started = time.time()
    size = config.size_mib * MIB
    with _workdir(config.keep_dir) as root:
        progress(f"run directory {root}; file of {config.size_mib} MiB; chunk sizes "
                 f"{', '.join(size_label(c) for c in config.chunk_sizes)}; {config.nodes} nodes, "
                 f"{config.replicas} replicas; phases <= {config.ops} ops or {config.seconds:g} s")
        data = os.urandom(size)
        file = root / "files" / "data.bin"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        machine = _machine(root)
        rows = await _measure(config, root, data, file)
    notes = _notes(rows, config, machine["harness_loop"])
    targets = goals(rows, nodes=config.nodes, replicas=config.replicas)
    print(render_table(rows, notes), file=out, flush=True)
    print("\n" + render_goals(targets), file=out, flush=True)
    document = {
        "machine": machine,
        "parameters": config.as_dict(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "rows": [r.as_dict() for r in rows],
        "ratios": ratios(rows),
        "loader": loader_summary(rows),
        "goals": targets,
        "notes": notes,
    }
    if config.json_path is not None:
        write_json(config.json_path, document)
        progress(f"results written to {config.json_path}")
    if config.plot_path is not None:
        why = write_plot(config.plot_path, rows, f"EmberFS bench, {config.size_mib} MiB file, "
                                                   f"{config.nodes} nodes x {config.replicas} replicas")
        progress(f"plot not drawn: {why}" if why else f"plot written to {config.plot_path}")
    return 0


async def _meta_on_etcd(root: Path, config: BenchConfig, system: str) -> list[Row]:
    """The metadata rows again on a metaserver whose namespace is in a local etcd."""
    from emberfs.metaserver.etcdkv.launch import EtcdCluster, install_etcd

    why = await asyncio.to_thread(install_etcd, progress) if not config.no_install else ""
    if why:
        progress(f"etcd rows skipped: {why}")
        return []
    etcd = EtcdCluster(root / "etcd", members=config.meta_etcd)
    await asyncio.to_thread(etcd.start, 60.0)
    cluster = EmberCluster(root / "cluster-etcd", config.chunk_sizes[0], nodes=config.nodes, replicas=config.replicas,
                           event_loop="asyncio", transports=config.transports[:1], label_loop=False, etcd=etcd,
                           metaservers=config.meta_etcd_metaservers)
    try:
        await cluster.start()
        progress(f"metadata ops on {cluster.system}'s metaserver")
        label = f"{system}, etcd x{config.meta_etcd}" + (
            f", {config.meta_etcd_metaservers} metaservers" if config.meta_etcd_metaservers > 1 else "")

        async def measure() -> list[Row]:
            return await emberfs_meta(await cluster.meta_clients(), label, config.depths, config.ops,
                                      config.seconds, cluster.server_pids)

        return await cluster.run(measure())
    finally:
        await cluster.aclose()
        await asyncio.to_thread(etcd.stop)


async def _measure(config: BenchConfig, root: Path, data: bytes, file: Path) -> list[Row]:
    data_work = "seq" in config.workloads or "rand" in config.workloads
    label_loop = config.event_loops != ("asyncio",)
    clusters = [
        EmberCluster(root / f"cluster-{size_label(c).replace(' ', '')}-{loop}", c, nodes=config.nodes,
                     replicas=config.replicas, event_loop=loop, transports=config.transports, label_loop=label_loop,
                     auth=config.auth)
        for c in config.chunk_sizes for loop in config.event_loops
    ]
    if not data_work and "loader" not in config.workloads:
        clusters = clusters[:1]  # metadata alone depends on neither chunk size nor loop: one is enough
    main_transport = config.transports[0]
    connections = max(max(config.depths), config.seq_inflight)
    max_read = max(max(config.read_sizes), config.seq_piece)
    page: PageCacheSource | None = None
    sock: RawSocketSource | None = None
    nginx: NginxSource | None = None
    rows: list[Row] = []
    try:
        for cluster in clusters:
            await cluster.start()
        if data_work:
            page = PageCacheSource(file, max_read)
            sock = RawSocketSource(root, file, connections, max_read)
            await _start_source(sock)
            why = "" if config.no_install else await asyncio.to_thread(install_nginx, progress)
            nginx = NginxSource(root, file, connections, not_installed=why)
            await _start_source(nginx)
            if nginx.unavailable:
                progress(f"nginx baseline unavailable: {nginx.unavailable}")
            sources: list[RangeSource] = [page, sock, nginx]

            progress("sequential write")
            # Without "seq" only the file the reads need is written (and its row dropped).
            write_transports = config.transports if "seq" in config.workloads else config.transports[:1]
            rows += [await c.seq_write(data, t) for c in clusters for t in write_transports]
            rows.append(local_write(root, data, config.replicas, config.chunk_sizes[0]))
            if "seq" in config.workloads:
                progress("sequential read")
                for c in clusters:
                    rows += [await c.seq_read(data, t, "read_into") for t in config.transports]
                    rows.append(await c.seq_read(data, main_transport, "read_file"))
                for src in sources:
                    rows.append(await _guarded(src, SEQ_READ, 0, source_seq_read(
                        src, data, config.seq_piece, config.seq_inflight, keep=src is not nginx)))
            else:
                rows = [r for r in rows if r.workload != SEQ_WRITE]
            if "rand" in config.workloads:
                for read_size in config.read_sizes:
                    offsets = random_offsets(config.seed, len(data), read_size, config.ops)
                    for depth in config.depths:
                        progress(f"{rand_name(read_size)}, {depth} in flight")
                        for c in clusters:
                            for t in config.transports:
                                apis = config.random_apis if t == main_transport else config.random_apis[:1]
                                rows += [await c.random_read(data, read_size, depth, offsets, config.seconds, t, api)
                                         for api in apis]
                        for src in sources:
                            rows.append(await _guarded(src, rand_name(read_size), depth, source_random_read(
                                src, data, read_size, depth, offsets, config.seconds)))
        first = next((c for c in clusters if not c.unavailable), None)
        if "meta" in config.workloads and first is None:
            progress(f"metadata ops skipped: {clusters[0].unavailable}")
        if "meta" in config.workloads and first is not None:
            progress(f"metadata ops on {first.system_for(main_transport)}'s metaserver")
            system = f"emberfs, {first.event_loop}" if label_loop else "emberfs"
            rows += await first.run(emberfs_meta(first.client(), system, config.depths, config.ops, config.seconds,
                                                 first.server_pids))
            rows += await health_meta(first.cluster.meta_address, config.depths, config.ops, config.seconds,
                                      first.server_pids)
            rows += lmdb_meta(root / "lmdb", config.depths, config.ops, config.seconds)
            if config.meta_etcd:
                rows += await _meta_on_etcd(root, config, system)
        if "loader" in config.workloads:
            rows += await loader_rows(clusters, root, config)
    finally:
        if nginx is not None:
            await nginx.aclose()
        if sock is not None:
            sock.stop()
        if page is not None:
            page.close()
        for cluster in clusters:
            try:
                await cluster.aclose()  # its processes are stopped even when closing a client fails
            except Exception as exc:
                progress(f"{cluster.system} ({cluster.event_loop}): closing its clients failed: {exc!r}")
        progress("every process started for the run is stopped")
    return _ordered(rows)


async def _start_source(src: RawSocketSource | NginxSource) -> None:
    try:
        await src.start()
    except Exception as exc:  # a baseline that cannot start is reported, not fatal
        src.unavailable = f"did not start: {exc}".splitlines()[0]


async def _guarded(src: RangeSource, workload: str, depth: int, phase: Coroutine[Any, Any, Row]) -> Row:
    """A baseline phase; a baseline that is missing or fails gives a row that says why."""
    if src.unavailable:
        phase.close()
        return Row.missing(workload, depth, src.system, src.role, MIBS, src.unavailable)
    try:
        return await phase
    except Exception as exc:
        progress(f"{src.system} failed in {workload}: {exc!r}")
        return Row.missing(workload, depth, src.system, src.role, MIBS, f"failed: {exc!r}")


def _ordered(rows: list[Row]) -> list[Row]:
    """Group the rows by (workload, depth) in the order the groups first ran; EmberFS first."""
    groups = list(dict.fromkeys((r.workload, r.in_flight) for r in rows))
    return sorted(rows, key=lambda r: (groups.index((r.workload, r.in_flight)), r.role != EMBERFS))


def _notes(rows: Sequence[Row], config: BenchConfig, harness_loop: str) -> list[str]:
    notes = []
    for write in (r for r in rows if r.role == EMBERFS and r.workload == SEQ_WRITE):
        read = next((r for r in rows if r.system == write.system and r.workload == SEQ_READ), None)
        if write.value and read is not None and read.value:
            notes.append(f"{write.system}: seq write is {write.value / read.value:.2f}x its seq read")
    if config.event_loops != ("asyncio",):
        notes.append(f"EmberFS clients ran on their cluster's event loop; the baselines' clients on the "
                     f"harness's ({harness_loop})")
    if len(config.chunk_sizes) > 1:
        best = []
        for workload, depth in dict.fromkeys((r.workload, r.in_flight) for r in rows if r.unit == MIBS):
            mine = [r for r in rows if r.role == EMBERFS and (r.workload, r.in_flight) == (workload, depth)
                    and r.value and r.detail != "pread"]
            if mine:
                top = max(mine, key=lambda r: r.value or 0.0)
                best.append(f"{workload}{f' x{depth}' if depth else ''}: {top.system.split(' ', 1)[1]}")
        notes.append("fastest chunk size per workload: " + "; ".join(best))
    return notes


def _machine(root: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": _first_line_with("/proc/cpuinfo", "model name"),
        "mem_total": _first_line_with("/proc/meminfo", "MemTotal"),
        "run_dir_fs": _filesystem(root),
        "nginx": nginx_version(),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,  # other work on the machine
        # The baselines' clients run on it; EmberFS clients on their cluster's (cluster.py).
        "harness_loop": "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio",
    }
    for module in ("grpc", "aiohttp", "lmdb", "uvloop"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            info[module] = None
    try:
        info["emberfs_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, check=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["emberfs_commit"] = None
    return info


def _first_line_with(path: str, key: str) -> str | None:
    try:
        with open(path) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), None)
    except OSError:
        return None


def _filesystem(path: Path) -> str | None:
    """The file-system type the run directory is on (tmpfs makes fsync free)."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f]
    except OSError:
        return None
    target = str(path.resolve())
    best = max((m for m in mounts if target == m[0] or target.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else None
