"""The README's main job: a DataLoader epoch larger than the cache, EmberFS beside local files and nginx.

A local EmberFS cluster serves training data to torch's DataLoader; the same shards are
read from local disk and from nginx in the same run.

    bash scripts/demo.sh [--samples N] [--sample-kib K | --sample-bytes MIN-MAX] [--shards S]
                         [--workers W] [--batch-size B] [--cache-mib C] [--nginx PATH]
                         [--no-install] [--keep]

1. starts a local cluster in a temporary directory (a metaserver and 3 storage
   servers on 127.0.0.1, chains of 3 replicas; `emberfs.client._launch.LocalCluster`);
2. writes a synthetic dataset (samples of random sizes, each starting with its number)
   as record shards into it, several shards at once, with a progress bar, and the
   same shards to local disk (`emberfs.bench.loaderdata`);
3. serves those local shards with nginx (installed with apt-get when missing and this
   may run it; `--no-install` skips that), read through a small HTTP `RangeReader`
   (`emberfs.bench.baselines.httpranges`);
4. reads one epoch from each source through `torch.utils.data.DataLoader`, block-shuffled
   (`IterableRecordDataset(shuffle=True)`) and in random order (`RecordDataset` with
   `shuffle=True`), with the page cache dropped before each (`emberfs.bench.epoch`),
   checking that every sample came exactly once, whole, with its CRC32C;
5. prints every row and the headline: EmberFS block-shuffled against local files read
   in random order (goal >= 0.5x) and against nginx block-shuffled (goal > 1x); then
   stops nginx and the cluster (also on Ctrl-C or a failure), reporting how each server
   exited.

The default dataset is 1 GiB of 4-28 KiB samples in 16 shards (the benchmark's), twice
what the workers' caches hold together with the datasets' default `cache_bytes` (256 MiB
per DataLoader worker). For a smaller dataset the cache is lowered to half the dataset
split between the workers, so the dataset stays larger than the cache; the output says
which (`--cache-mib` sets it).
Progress goes to stderr, the results to stdout. Without torch the epochs run as plain
batched loops in this process, and the demo says so; without nginx its row says why.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emberfs.bench.baselines.nginx import NginxServer, install_nginx, nginx_version
from emberfs.bench.epoch import BLOCK, RANDOM, EpochResult, Source, loader_text, run_epoch
from emberfs.bench.loaderdata import DatasetSpec, store_dataset
from emberfs.bench.options import parse_size_range
from emberfs.client import SyncClient
from emberfs.client._launch import LocalCluster
from emberfs.client.commands._progress import Progress
from emberfs.client.datasets import CACHE_BYTES

MIB = 1 << 20
NODES = REPLICAS = 3
DATA_DIR = "/datasets/synthetic/train"
SEED = 0
STORE_IN_FLIGHT = 4  # shards written at once
EMBERFS = f"EmberFS ({NODES} nodes x {REPLICAS} replicas)"
LOCAL = "local files (same shards)"
PEER = "nginx over HTTP (same shards)"
LOADERS = {BLOCK: "IterableRecordDataset(shuffle=True)", RANDOM: "RecordDataset, DataLoader(shuffle=True)"}
# (source, order): every row, in the order they run; the first, third and fifth make the headline.
ROWS = ((EMBERFS, BLOCK), (EMBERFS, RANDOM), (LOCAL, RANDOM), (LOCAL, BLOCK), (PEER, BLOCK))
GOAL_LOCAL, GOAL_PEER = 0.5, 1.0


def say(text: str) -> None:
    print(f"[demo] {text}", file=sys.stderr, flush=True)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=65536, help="samples in the dataset (default 65536: 1 GiB)")
    p.add_argument("--sample-kib", type=int, default=16,
                   help="mean sample size in KiB: sizes uniform in 1/4 to 7/4 of it (default 16: 4-28 KiB)")
    p.add_argument("--sample-bytes", type=parse_size_range, default=None, metavar="MIN-MAX",
                   help="sample sizes uniform in MIN-MAX bytes (100-20000, 4K-28K); overrides --sample-kib")
    p.add_argument("--shards", type=int, default=16, help="record shards (default 16)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--batch-size", type=int, default=64, help="DataLoader batch size (default 64)")
    p.add_argument("--cache-mib", type=int, default=None,
                   help="the datasets' cache_bytes per worker, MiB (default: half the dataset split between "
                        f"the workers, at most {CACHE_BYTES // MIB})")
    p.add_argument("--nginx", default=None, metavar="PATH", help="the nginx binary of the peer (default: on PATH)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install nginx when it is missing")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs)")
    args = p.parse_args(argv)
    if min(args.samples, args.sample_kib, args.shards, args.batch_size) < 1 or args.workers < 0:
        p.error("sizes and counts must be positive")
    if args.cache_mib is not None and args.cache_mib < 0:
        p.error("--cache-mib must not be negative")
    lo, hi = args.sample_bytes or (args.sample_kib * 1024 // 4, args.sample_kib * 1024 * 7 // 4)
    try:
        args.dataset = DatasetSpec(args.samples, lo, hi, min(args.shards, args.samples), SEED)
    except ValueError as exc:
        p.error(str(exc))
    return args


def cache_bytes(args: argparse.Namespace) -> int:
    if args.cache_mib is not None:
        return int(args.cache_mib) * MIB
    return min(CACHE_BYTES, args.dataset.sample_bytes // (2 * max(args.workers, 1)))


class _Lines:
    """Progress's `\\r` redraws as whole lines, for a stderr that is not a terminal (a log)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        if text.startswith("\r"):
            self._stream.write(text[1:].rstrip() + "\n")

    def flush(self) -> None:
        self._stream.flush()


def write_dataset(meta: str, local: Path, spec: DatasetSpec) -> tuple[list[str], float]:
    """The shards into EmberFS and local disk; (their names, seconds)."""
    tty = sys.stderr.isatty()
    total = sum(spec.file_bytes(k) for k in range(spec.shards))
    bar = Progress(total, sys.stderr if tty else _Lines(sys.stderr), enabled=True, delay=0.0,  # type: ignore[arg-type]
                   min_interval=0.1 if tty else 3.0)
    done = [0]

    def report(stored: int, _: int) -> None:
        bar.advance(stored - done[0])
        done[0] = stored

    start = time.perf_counter()
    try:
        with SyncClient(meta) as fs:
            fs.makedirs(DATA_DIR, exist_ok=True)
            names = store_dataset(spec, local, DATA_DIR, [fs.write_file], in_flight=STORE_IN_FLIGHT, report=report)
    finally:
        bar.close()
    return names, time.perf_counter() - start


def start_peer(root: Path, local: Path, args: argparse.Namespace) -> tuple[NginxServer, str]:
    """nginx over the local shards; (the server, "" or why it is not serving)."""
    server = NginxServer(root / "nginx", local, binary=args.nginx)
    why = "" if args.no_install or args.nginx else install_nginx(lambda text: say(f"  {text}"))
    return server, why or server.start()


def run_rows(meta: str, root: Path, names: list[str], peer: NginxServer, peer_why: str,
             args: argparse.Namespace, cluster: LocalCluster) -> dict[tuple[str, str], EpochResult | str]:
    """Every row's epoch (or why it did not run)."""
    paths = {EMBERFS: [f"{DATA_DIR}/{n}" for n in names], LOCAL: [str(root / "local" / n) for n in names],
             PEER: [f"/{n}" for n in names]}
    sources = {EMBERFS: Source("emberfs", meta), LOCAL: Source("local"), PEER: Source("http", peer.url)}
    servers = {EMBERFS: lambda: [p.pid for _, p in cluster.processes() if p.running and p.pid is not None],
               PEER: peer.pids}
    results: dict[tuple[str, str], EpochResult | str] = {}
    for source, order in ROWS:
        if source == PEER and peer_why:
            results[(source, order)] = peer_why
            continue
        say(f"  {source}, {order} ...")
        result = run_epoch(sources[source], paths[source], order, args.dataset.sizes, batch=args.batch_size,
                           workers=args.workers, seed=SEED, cache_bytes=cache_bytes(args), cold_dirs=[root],
                           server_pids=servers.get(source))
        results[(source, order)] = result
        say(f"  {source}, {order}: {result.samples} samples in {result.seconds:.2f} s")
    return results


def _rate(result: EpochResult | str | None) -> float | None:
    return result.samples / result.seconds if isinstance(result, EpochResult) and result.seconds > 0 else None


def _verdict(ratio: float, goal: float, strictly: bool) -> str:
    ok = ratio > goal if strictly else ratio >= goal
    return f"goal {'>' if strictly else '>='} {goal:g}x: {'PASS' if ok else 'MISS'}"


def report(meta: str, args: argparse.Namespace, write_s: float, peer_version: str | None,
           results: dict[tuple[str, str], EpochResult | str]) -> None:
    spec = args.dataset
    total = spec.sample_bytes
    cache = cache_bytes(args)
    workers = max(args.workers, 1)
    print(f"EmberFS demo: a metaserver and {NODES} storage servers on 127.0.0.1 (metaserver {meta}), "
          f"chains of {REPLICAS} replicas")
    print(f"dataset: {spec.samples} samples of {spec.label} ({total / MIB:.1f} MiB) in {spec.shards} record shards "
          f"under {DATA_DIR}, the same shards on local disk and served by "
          f"{peer_version or 'nginx (when available)'}; written in {write_s:.1f} s "
          f"({total / MIB / write_s:.1f} MiB/s, to EmberFS and local disk at once)")
    larger = "larger than" if total > cache * workers else "NOT larger than"
    lowered = "" if cache >= CACHE_BYTES or args.cache_mib is not None else \
        f", lowered from the default {CACHE_BYTES // MIB} MiB for this dataset's size"
    print(f"cache: cache_bytes {cache / MIB:.0f} MiB per worker{lowered}; the dataset is {larger} "
          f"the {workers} workers' caches together ({cache * workers / MIB:.0f} MiB)")
    cold = next((r.cold for r in results.values() if isinstance(r, EpochResult)), "")
    print(f"each row: one epoch through {loader_text(args.batch_size, args.workers)}, {cold} before it, "
          "timed from building the dataset (worker start included; '1st batch': when the first batch came) to "
          "the last batch; every sample CRC-checked and counted exactly once\n")
    print(f"{'source':<32}{'loader':<41}{'order':<16}{'samples':>8}{'1st batch':>10}{'seconds':>9}{'samples/s':>11}"
          f"{'MiB/s':>8}")
    for (source, order), result in results.items():
        start = f"{source:<32}{LOADERS[order]:<41}{order:<16}"
        if isinstance(result, str):
            print(f"{start}unavailable: {result}")
            continue
        print(f"{start}{result.samples:>8}{result.first_batch_s:>10.2f}{result.seconds:>9.2f}"
              f"{result.samples / result.seconds:>11.0f}"
              f"{result.nbytes / MIB / result.seconds:>8.1f}")
    mine = _rate(results.get((EMBERFS, BLOCK)))
    local, peer = _rate(results.get((LOCAL, RANDOM))), _rate(results.get((PEER, BLOCK)))
    if mine is None or local is None:
        return
    line = (f"\nEmberFS, {BLOCK}: {mine / local:.2f}x local files in {RANDOM} "
            f"({_verdict(mine / local, GOAL_LOCAL, False)}) and ")
    if peer is None:
        why = results.get((PEER, BLOCK))
        line += f"no figure for nginx ({why})"
    else:
        line += f"{mine / peer:.2f}x nginx, {BLOCK} ({_verdict(mine / peer, GOAL_PEER, True)})"
    print(line + "; every sample arrived once and matched its CRC32C")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    root = Path(tempfile.mkdtemp(prefix="emberfs-demo-"))
    cluster = LocalCluster(root / "cluster", nodes=NODES, replicas=REPLICAS)
    peer: NginxServer | None = None
    try:
        say(f"starting a local cluster in {root}/cluster")
        meta = cluster.start(timeout=120, progress=lambda text: say(f"  {text}"))
        spec = args.dataset
        say(f"writing {spec.samples} samples of {spec.label} ({spec.sample_bytes / MIB:.1f} MiB) as {spec.shards} "
            f"record shards to emberfs://{meta}{DATA_DIR} and to {root}/local")
        names, write_s = write_dataset(meta, root / "local", spec)
        peer, peer_why = start_peer(root, root / "local", args)
        say(f"nginx, pid {peer.pids()[0]}, serves the local shards at {peer.url}" if not peer_why else
            f"no nginx peer: {peer_why}")
        say(f"reading one epoch per row through {loader_text(args.batch_size, args.workers)}")
        results = run_rows(meta, root, names, peer, peer_why, args, cluster)
        report(meta, args, write_s, nginx_version(peer.binary) if not peer_why else None, results)
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if peer is not None:
            peer.stop()
        cluster.stop()
        codes = {name: proc.returncode for name, proc in cluster.processes()}
        clean = all(code == 0 for code in codes.values())
        message = (f"cluster stopped cleanly ({len(codes)} processes exited 0)" if clean else
                   "cluster stopped; exit codes " + ", ".join(f"{n}: {c}" for n, c in codes.items()))
        say(message)
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
