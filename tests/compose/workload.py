"""The compose tests' workload, run INSIDE the client container (`python -c
"$(cat workload.py)" MODE ...`), so every byte goes through the compose network the way a user's
job in that container would.

    write   write N files of SIZE bytes under DIR (4 at a time), then read them back;
            one JSON line: bytes, seconds and MiB/s each way, mismatches
    read    read those files at random for DURATION seconds, each byte-checked; a
            `{"ready": T}` line once reads run, then at the end one JSON line: reads
            and failures with their times (CLOCK_MONOTONIC, shared with the host: a
            test can place a `docker kill` among them), the longest stretch with no
            completed read, mismatches
    create  create files one after another under DIR (DIR/file-0000.bin, ...: a create, a
            write of SIZE bytes and a close each) for DURATION seconds; a `{"ready": T}`
            line once creates run, then one JSON line: files (those acknowledged), the
            completion times, failures, the longest stretch with none completed
    verify  read every file once; one JSON line: files, mismatches, failures

A file's bytes follow from (seed, index) alone, so a later run knows what to expect
without the writer's memory. Not a test module: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time

from emberfs.client import Client

MIB = 1024 * 1024
_IN_FLIGHT = 4


def content(seed: int, index: int, size: int) -> bytes:
    return random.Random(f"{seed}-{index}").randbytes(size)


def path_of(directory: str, index: int) -> str:
    return f"{directory}/file-{index:04d}.bin"


async def _write(fs: Client, args: argparse.Namespace) -> dict[str, object]:
    await fs.makedirs(args.dir, exist_ok=True)
    blobs = [content(args.seed, i, args.size) for i in range(args.files)]
    gate = asyncio.Semaphore(_IN_FLIGHT)

    async def put(i: int) -> None:
        async with gate:
            await fs.write_file(path_of(args.dir, i), blobs[i])

    async def get(i: int) -> bool:
        async with gate:
            return await fs.read_file(path_of(args.dir, i)) == blobs[i]

    start = time.perf_counter()
    await asyncio.gather(*(put(i) for i in range(args.files)))
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    same = await asyncio.gather(*(get(i) for i in range(args.files)))
    read_s = time.perf_counter() - start
    total = args.files * args.size
    return {
        "bytes": total,
        "write_s": round(write_s, 3),
        "read_s": round(read_s, 3),
        "write_mib_s": round(total / MIB / write_s, 1),
        "read_mib_s": round(total / MIB / read_s, 1),
        "mismatches": same.count(False),
    }


async def _read(fs: Client, args: argparse.Namespace) -> dict[str, object]:
    expected = {i: content(args.seed, i, args.size) for i in range(args.files)}
    rng = random.Random()
    done: list[float] = []
    failures: list[tuple[float, str]] = []
    mismatches = 0
    # One read first, then a line saying so: the test's fault comes among running reads,
    # not during this process's start (imports, the expected bytes).
    if await fs.read_file(path_of(args.dir, 0)) != expected[0]:
        mismatches += 1
    print(json.dumps({"ready": time.monotonic()}), flush=True)
    started = time.monotonic()
    end = started + args.duration

    async def reader() -> None:
        nonlocal mismatches
        while time.monotonic() < end:
            i = rng.randrange(args.files)
            try:
                data = await fs.read_file(path_of(args.dir, i))
            except Exception as exc:  # every failure is a finding, reported, never raised
                failures.append((time.monotonic(), f"{type(exc).__name__}: {exc}"[:200]))
                await asyncio.sleep(0.05)
                continue
            if data != expected[i]:
                mismatches += 1
            done.append(time.monotonic())

    await asyncio.gather(*(reader() for _ in range(args.readers)))
    marks = [started, *sorted(done), time.monotonic()]
    longest_gap = max(b - a for a, b in itertools.pairwise(marks))
    return {
        "started": started,
        "reads": len(done),
        "read_times": [round(t, 3) for t in done],
        "failures": failures[:20],
        "failure_count": len(failures),
        "mismatches": mismatches,
        "longest_gap_s": round(longest_gap, 3),
        "bytes": len(done) * args.size,
    }


async def _create(fs: Client, args: argparse.Namespace) -> dict[str, object]:
    await fs.makedirs(args.dir, exist_ok=True)
    print(json.dumps({"ready": time.monotonic()}), flush=True)
    done: list[float] = []
    failures: list[tuple[float, str]] = []
    started = time.monotonic()
    end = started + args.duration
    index = 0
    # One at a time: a file counts once its write_file returned, and the next index is
    # taken only then, so files 0..N-1 are exactly the acknowledged ones.
    while time.monotonic() < end:
        try:
            await fs.write_file(path_of(args.dir, index), content(args.seed, index, args.size))
        except Exception as exc:  # reported, never raised: the test judges
            failures.append((time.monotonic(), f"{type(exc).__name__}: {exc}"[:200]))
            await asyncio.sleep(0.05)
            continue
        done.append(time.monotonic())
        index += 1
    marks = [started, *done, time.monotonic()]
    return {
        "started": started,
        "files": index,
        "create_times": [round(t, 3) for t in done],
        "failures": failures[:20],
        "failure_count": len(failures),
        "longest_gap_s": round(max(b - a for a, b in itertools.pairwise(marks)), 3),
    }


async def _verify(fs: Client, args: argparse.Namespace) -> dict[str, object]:
    mismatches = failures = 0
    for i in range(args.files):
        try:
            if await fs.read_file(path_of(args.dir, i)) != content(args.seed, i, args.size):
                mismatches += 1
        except OSError:
            failures += 1
    return {"files": args.files, "mismatches": mismatches, "failures": failures}


_MODES = {"write": _write, "read": _read, "create": _create, "verify": _verify}


async def _main(args: argparse.Namespace) -> None:
    async with Client(args.meta, timeout=args.timeout) as fs:
        result = await _MODES[args.mode](fs, args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    import os

    parser = argparse.ArgumentParser(prog="workload")
    parser.add_argument("mode", choices=sorted(_MODES))
    parser.add_argument("--meta", default=os.environ.get("EMBERFS_META", "meta:9000"))
    parser.add_argument("--dir", default="/compose")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size", type=int, default=4 * MIB)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=30.0, help="the Client's bound on each call")
    asyncio.run(_main(parser.parse_args()))
