"""Whole-file write and read throughput of a local cluster, next to the local disk.

    python bench/cluster_io.py [--size-mib 256] [--nodes 3] [--replicas 3]
                               [--chunk-size BYTES] [--rounds 2] [--json FILE]

Starts its own `LocalCluster` (a metaserver and N storage servers, each its own process
on 127.0.0.1) in a temporary directory, then, through the real `emberfs.client.Client`,
writes one file of the given size with `write_file` and reads it back with `read_file`,
checking the bytes. In the same run it measures the local limits on the same file
system, so the figures can be read as ratios on a shared, noisy machine:

  * local write: the same bytes written `replicas` times to local files, fsync per chunk
    (what the replicas' disks must do at least, with no network and no Python servers);
  * local read: the file read back from the page cache with `os.preadv` into one buffer.

Each round repeats the cluster write and read; the best round is reported (MiB/s =
2^20 bytes per second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from emberfs.client import Client
from emberfs.client._launch import LocalCluster

MIB = 1 << 20


@dataclass
class Result:
    name: str
    bytes: int
    seconds: float
    cpu_seconds: float  # this process only (the client, or the local baseline)

    @property
    def mib_s(self) -> float:
        return self.bytes / MIB / self.seconds if self.seconds else 0.0


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def cluster_round(address: str, data: bytes, round_no: int) -> list[Result]:
    path = f"/bench-{round_no}.bin"
    async with Client(address, uid=0, gid=0, groups=[]) as client:
        c0, t0 = _cpu(), time.perf_counter()
        await client.write_file(path, data)
        write = Result("cluster write_file", len(data), time.perf_counter() - t0, _cpu() - c0)
        progress(f"  round {round_no}: write {write.mib_s:8.1f} MiB/s")
        c0, t0 = _cpu(), time.perf_counter()
        back = await client.read_file(path)
        read = Result("cluster read_file", len(back), time.perf_counter() - t0, _cpu() - c0)
        progress(f"  round {round_no}: read  {read.mib_s:8.1f} MiB/s")
        if back != data:
            raise SystemExit("read_file returned different bytes than were written")
        await client.remove(path)
    return [write, read]


def local_write(directory: Path, data: bytes, copies: int, chunk_size: int) -> Result:
    view = memoryview(data)
    c0, t0 = _cpu(), time.perf_counter()
    for copy in range(copies):
        fd = os.open(directory / f"local-{copy}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for offset in range(0, len(data), chunk_size):
                os.pwrite(fd, view[offset:offset + chunk_size], offset)
                os.fsync(fd)
        finally:
            os.close(fd)
    return Result(f"local write x{copies} (fsync/chunk)", len(data), time.perf_counter() - t0, _cpu() - c0)


def local_read(directory: Path, size: int, chunk_size: int) -> Result:
    buffer = bytearray(size)
    view = memoryview(buffer)
    fd = os.open(directory / "local-0.bin", os.O_RDONLY)
    try:
        os.preadv(fd, [view], 0)  # warm the page cache, as the cluster's replicas are warm
        c0, t0 = _cpu(), time.perf_counter()
        for offset in range(0, size, chunk_size):
            os.preadv(fd, [view[offset:offset + chunk_size]], offset)
        seconds = time.perf_counter() - t0
    finally:
        os.close(fd)
    return Result("local read (page cache)", size, seconds, _cpu() - c0)


def table(results: list[Result], write_base: Result, read_base: Result) -> str:
    header = f"{'phase':<32}{'MiB':>7}{'MiB/s':>10}{'client CPU s/GiB':>18}{'vs local':>10}"
    lines = [header, "-" * len(header)]
    for r in results:
        base = write_base if "write" in r.name else read_base
        cpu_per_gib = r.cpu_seconds / (r.bytes / (1 << 30)) if r.bytes else 0.0
        lines.append(
            f"{r.name:<32}{r.bytes / MIB:>7.0f}{r.mib_s:>10.1f}{cpu_per_gib:>18.2f}"
            f"{r.mib_s / base.mib_s if base.mib_s else 0:>9.2f}x"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=4 * MIB)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    data = os.urandom(args.size_mib * MIB)
    with tempfile.TemporaryDirectory(prefix="emberfs-bench-") as tmp:
        root = Path(tmp)
        progress(f"starting a local cluster: {args.nodes} nodes, {args.replicas} replicas, "
                 f"{args.chunk_size // 1024} KiB chunks ...")
        cluster = LocalCluster(root / "cluster", nodes=args.nodes, replicas=args.replicas,
                               chunk_size=args.chunk_size)
        cluster.start(timeout=60.0)
        results: list[Result] = []
        try:
            progress(f"cluster ready, meta at {cluster.meta_address}; {args.size_mib} MiB per phase")
            for round_no in range(1, args.rounds + 1):
                results += asyncio.run(cluster_round(cluster.meta_address, data, round_no))
        finally:
            cluster.stop()
        progress("local baselines on the same file system ...")
        write_base = local_write(root, data, args.replicas, args.chunk_size)
        read_base = local_read(root, len(data), args.chunk_size)

    best = [max((r for r in results if r.name == name), key=lambda r: r.mib_s)
            for name in ("cluster write_file", "cluster read_file")]
    print(table([*best, write_base, read_base], write_base, read_base))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        rows = [dict(asdict(r), mib_s=r.mib_s) for r in [*results, write_base, read_base]]
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": rows},
                                        indent=2) + "\n")
        progress(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
