"""How should a storage server read and send chunk bytes? Each way, measured (issue 8).

    python -m emberfs.bench.serverio [--quick] [--json FILE]

A server process serves whole chunk files to a client process over loopback; only
the server's way of reading and sending the bytes changes between rows:

    aiofiles       async with aiofiles.open(); await f.seek(); await f.read(); transport.write
    preadv-pool    os.preadv in the thread pool into a pooled buffer; transport.write of a view
    preadv-nowait  the same buffer filled inline on the loop by preadv2(RWF_NOWAIT) when the
                   page cache holds the bytes, in the thread pool when it does not
    pread-bytes    os.pread in the thread pool (fresh bytes each time); transport.write
    pread-bytes-nofc  the same, writing every response at once whatever the transport holds
                   (no flow control: what a server that ignores pause_writing() pays)
    loop.sendfile  await loop.sendfile(transport, file, offset, count): one response at a
                   time per connection (asyncio refuses writes while a sendfile runs)
    os.sendfile    os.sendfile on the raw socket (loop.sock_* and add_writer, no transport),
                   which is how uvloop, which has no loop.sendfile, can send files

Every strategy but -nofc follows flow control (bench/serverio_server.py says how and
why it matters).

The storage server today (storage/bulkserver.py) is closest to two rows: a read of a
whole committed chunk of 1 MiB or more goes out with loop.sendfile on the standard
loop without TLS (loop.sendfile); any other read is read into fresh bytes, with
preadv2(RWF_NOWAIT) on the loop when it is 256 KiB or less and cached, with os.pread
in the thread pool otherwise (pread-bytes). Its answers leave with flow control: the
connection stops reading requests while the transport is paused, and a payload over
256 KiB is handed to the transport in 256 KiB pieces as it drains
(common/bulkclient.py's Cork).

Method: the data set (--data-mib per chunk size, split into chunk files, written,
fsynced and read once so that the page cache is warm) is served by one server process
per event loop and strategy, each idle while the others run. A round measures every
(chunk size, in flight, loop, strategy) once, the strategies of one configuration
back to back, their order rotated every round; rounds repeat until --rounds or the
--budget. Each measurement opens a connection and keeps --in-flight requests
outstanding on it (bench/serverio_client.py); client and server run the same loop
kind. The table (bench/serverio_report.py) gives medians over rounds, their spread,
each row's per-round ratio to pread-bytes and the rounds it won.

The parts: bench/serverio_wire.py (wire format, stamped chunk files),
bench/serverio_server.py (the server process and its strategies),
bench/serverio_client.py (the client and one measurement), bench/serverio_report.py
(rows, summary, table); this module runs them and is the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .serverio_client import STRETCH_S, measure
from .serverio_report import REFERENCE, Result, reference_of, render, summary
from .serverio_server import read_cached, run_on, serve_main
from .serverio_wire import LOOPS, MIB, READY_PREFIX, STAMP_EVERY, STRATEGIES, stamps_of, write_data

__all__ = ["LOOPS", "STRATEGIES", "Config", "main", "run"]

DRAIN_S = 15.0 + STRETCH_S  # past warmup + seconds, a measurement that has not finished is killed
SERVER_START_S = 20.0


# -- availability --------------------------------------------------------------------------


async def _probe_loop_sendfile(path: Path) -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    try:
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        try:
            with open(path, "rb") as f:
                await loop.sendfile(transport, f, 0, 8, fallback=False)
        finally:
            transport.close()
    finally:
        b.close()


def _unavailable(strategy: str, loop: str, sample_file: Path) -> str:
    """Why this strategy cannot run on this loop here ("" when it can)."""
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed (pip install 'emberfs[fast]')"
    if strategy == "aiofiles" and importlib.util.find_spec("aiofiles") is None:
        return "aiofiles is not installed"
    if strategy == "preadv-nowait":
        if not hasattr(os, "RWF_NOWAIT"):
            return "os.RWF_NOWAIT is not available on this platform"
        try:
            read_cached(str(sample_file), memoryview(bytearray(8)), 0)
        except OSError as exc:
            return f"preadv2(RWF_NOWAIT) fails here: {exc}"
    if strategy == "os.sendfile" and not hasattr(os, "sendfile"):
        return "os.sendfile is not available on this platform"
    if strategy == "loop.sendfile":
        try:
            run_on(loop, _probe_loop_sendfile(sample_file))
        except NotImplementedError:
            return f"{loop} does not implement loop.sendfile (NotImplementedError); see os.sendfile"
        except Exception as exc:  # noqa: BLE001 - any refusal is the reason to report
            return f"loop.sendfile fails on {loop}: {exc!r}"
    return ""


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    rounds: int = 5
    seconds: float = 0.8
    warmup: float = 0.2
    data_mib: int = 256
    chunk_sizes: tuple[int, ...] = (1 * MIB, 4 * MIB)
    in_flight: tuple[int, ...] = (4, 16)
    loops: tuple[str, ...] = LOOPS
    strategies: tuple[str, ...] = STRATEGIES
    threads: int = 8  # storage/server.py's IO_THREADS
    budget_s: float = 330.0  # no new round starts past this (a round is never cut short)
    quick: bool = False
    directory: str | None = None  # where the temporary data set goes (None: the system's)


def progress(text: str) -> None:
    print(f"[serverio] {text}", file=sys.stderr, flush=True)


def run(config: Config) -> dict[str, Any]:
    """Measure every row; the JSON document (parameters, machine, rows, summary)."""
    from emberfs.client._launch import ServerProcess

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="emberfs-serverio-", dir=config.directory))
    servers: dict[tuple[str, str], ServerProcess] = {}
    try:
        data = work / "chunks"
        data.mkdir()
        progress(f"writing {len(config.chunk_sizes)} x {config.data_mib} MiB of chunk files in {data}")
        numbers = write_data(data, config.chunk_sizes, config.data_mib * MIB)
        sample_file = data / str(numbers[config.chunk_sizes[0]][0])
        stamps = {c: stamps_of(c, size).tobytes() for size, chunks in numbers.items() for c in chunks}
        why = {(loop, s): _unavailable(s, loop, sample_file) for loop in config.loops for s in config.strategies}

        def server(loop: str, strategy: str) -> ServerProcess:
            return ServerProcess(
                [sys.executable, "-m", "emberfs.bench.serverio", "--serve", strategy, "--loop", loop,
                 "--data", str(data), "--threads", str(config.threads)],
                ready_prefix=READY_PREFIX, log_path=work / f"server-{loop}-{strategy}.log")

        def start(key: tuple[str, str]) -> None:
            try:
                servers[key].start(SERVER_START_S)
            except Exception as exc:  # noqa: BLE001 - the row says why
                why[key] = f"the server did not start: {exc}"

        for key, reason in why.items():
            if not reason:
                servers[key] = server(*key)
        progress(f"starting {len(servers)} server processes")
        with ThreadPoolExecutor(max(1, len(servers))) as pool:
            list(pool.map(start, list(servers)))

        results = {(loop, size, depth, s): Result(loop, size, depth, s, why[loop, s])
                   for size in config.chunk_sizes for depth in config.in_flight
                   for loop in config.loops for s in config.strategies}
        buffers = {size: [bytearray(1) * size for _ in range(max(config.in_flight))] for size in config.chunk_sizes}
        rounds_done, round_s = 0, 0.0
        for round_no in range(config.rounds):
            if rounds_done and time.monotonic() - started + round_s > config.budget_s:
                progress(f"budget of {config.budget_s:g} s reached after {rounds_done} rounds")
                break
            round_start = time.monotonic()
            order = config.strategies[round_no % len(config.strategies):] + \
                config.strategies[:round_no % len(config.strategies)]
            for size in config.chunk_sizes:
                for depth in config.in_flight:
                    slots = [memoryview(b)[:size] for b in buffers[size][:depth]]
                    for loop in config.loops:
                        for strategy in order:
                            result = results[loop, size, depth, strategy]
                            if result.unavailable:
                                continue
                            proc = servers[loop, strategy]
                            try:
                                assert proc.address is not None and proc.pid is not None
                                sample = run_on(loop, asyncio.wait_for(
                                    measure(proc.address, proc.pid, slots, numbers[size], stamps,
                                            config.warmup, config.seconds, round_no),
                                    config.warmup + config.seconds + DRAIN_S))
                            except Exception as exc:  # noqa: BLE001 - recorded; the server starts afresh
                                result.errors.append(f"round {round_no}: {exc!r}")
                                progress(f"{loop} {strategy} {size // MIB} MiB x{depth}: FAILED {exc!r}")
                                proc.kill()
                                start((loop, strategy))
                                if why[loop, strategy]:
                                    for r in results.values():
                                        if (r.loop, r.strategy) == (loop, strategy):
                                            r.unavailable = why[loop, strategy]
                                continue
                            result.samples.append(sample)
                            progress(f"round {round_no + 1}/{config.rounds} {loop:<7} {size // MIB} MiB "
                                     f"x{depth:<2} {strategy:<13} {sample.mib_s:8.0f} MiB/s  server "
                                     f"{sample.server_cpu_s_per_gib:.2f} s/GiB")
                    _count_wins([r for r in results.values() if (r.chunk_size, r.in_flight) == (size, depth)],
                                round_no)
            rounds_done += 1
            round_s = time.monotonic() - round_start
        return _document(config, list(results.values()), rounds_done, time.monotonic() - started)
    finally:
        for proc in servers.values():
            proc.stop(grace=2.0)
        shutil.rmtree(work, ignore_errors=True)


def _count_wins(results: list[Result], round_no: int) -> None:
    """Credit, per loop, the fastest strategy of this round in one configuration."""
    for loop in {r.loop for r in results}:
        ran = [(s.mib_s, r) for r in results if r.loop == loop for s in r.samples if s.round == round_no]
        if len(ran) > 1:
            max(ran, key=lambda pair: pair[0])[1].rounds_won += 1


def _document(config: Config, results: list[Result], rounds: int, elapsed: float) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "parameters": asdict(config) | {"rounds_done": rounds, "elapsed_s": elapsed, "reference": REFERENCE},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "uvloop": version("uvloop"), "aiofiles": version("aiofiles")},
        "rows": [r.as_dict() | {"vs_reference": r.paired_ratio(reference_of(results, r))} for r in results],
        "summary": summary(results),
    }


# -- command line ------------------------------------------------------------------------------


def _sizes(text: str) -> tuple[int, ...]:
    units = {"K": 1 << 10, "M": MIB}
    out = []
    for part in text.split(","):
        part = part.strip().upper().removesuffix("IB").removesuffix("B")
        out.append(int(part[:-1]) * units[part[-1]] if part[-1:] in units else int(part))
    if any(size % STAMP_EVERY or size <= 0 for size in out):
        raise argparse.ArgumentTypeError(f"chunk sizes must be positive multiples of {STAMP_EVERY}")
    return tuple(out)


def _names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return names
    return parse


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(","))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emberfs.bench.serverio",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (1 round, 32 MiB)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 1)")
    parser.add_argument("--seconds", type=float, help="timed seconds per measurement (default 0.8; --quick 0.1)")
    parser.add_argument("--warmup", type=float, help="untimed seconds before each (default 0.2; --quick 0.05)")
    parser.add_argument("--data-mib", type=int, help="MiB of chunk files per chunk size (default 256; --quick 32)")
    parser.add_argument("--budget", type=float, help="seconds after which no new round starts (default 330)")
    parser.add_argument("--chunk-sizes", type=_sizes, default=Config.chunk_sizes, help="default 1M,4M")
    parser.add_argument("--in-flight", type=_ints, default=Config.in_flight, help="default 4,16")
    parser.add_argument("--loops", type=_names(LOOPS), default=Config.loops, help="default asyncio,uvloop")
    parser.add_argument("--strategies", type=_names(STRATEGIES), default=Config.strategies,
                        help=f"default {','.join(STRATEGIES)}")
    parser.add_argument("--threads", type=int, default=Config.threads, help="server read threads (default 8)")
    parser.add_argument("--dir", help="where the temporary data set goes (default: the system's temp dir)")
    # The server processes this run starts: python -m emberfs.bench.serverio --serve STRATEGY ...
    parser.add_argument("--serve", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--listen", default="127.0.0.1:0", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve_main(args)

    quick = args.quick

    def pick(value: Any, default: Any, quick_default: Any) -> Any:
        return value if value is not None else (quick_default if quick else default)

    config = Config(
        rounds=pick(args.rounds, Config.rounds, 1), seconds=pick(args.seconds, Config.seconds, 0.1),
        warmup=pick(args.warmup, Config.warmup, 0.05), data_mib=pick(args.data_mib, Config.data_mib, 32),
        chunk_sizes=args.chunk_sizes, in_flight=args.in_flight, loops=args.loops, strategies=args.strategies,
        threads=args.threads, budget_s=pick(args.budget, Config.budget_s, 25.0), quick=quick, directory=args.dir)
    try:
        doc = run(config)
    except KeyboardInterrupt:
        return 130
    print(render(doc))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
