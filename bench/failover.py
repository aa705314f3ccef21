"""Failover, measured: one run that kills a chain's server under continuous writes,
restarts it, and prints what the closing note of issue 5 asks for.

    python bench/failover.py [--role head|middle|tail] [--chunk-size BYTES]
                             [--down-mib MiB] [--data-dir DIR]

prints (stdout; progress goes to stderr):
    acknowledged writes and how many failed; lost acknowledged writes (must be 0: every
    file is read back byte for byte at the end); the longest write stall during the
    failover (the longest stretch with no acknowledged write, from the kill -9 until the
    chain took writes again); failure detection time; restart -> SERVING time; resync
    volume and MiB/s (from the resync source's INFO log line).

The pieces are shared with the fault-injection suite (tests/faults/conftest.py imports
them; test files cannot share modules of their own):

    Workload      continuous writes (new files, in-place overwrites, whole replacements)
                  and byte-verified reads through the real async Client on a background
                  thread. A write's bytes enter the expected contents only once the Client
                  acknowledged it; a failed write makes its file uncertain (dropped from
                  the checks, never written again) and is counted.
    FaultCluster  a started LocalCluster and the questions asked while it breaks: which
                  server holds the head, middle or tail of a chain (from the routing),
                  waiting for chain states, reading every file back.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from emberfs.client import Client, RetryPolicy, SyncClient
from emberfs.client._admin import cluster_problems
from emberfs.client._launch import LocalCluster, ServerProcess
from emberfs.common.chainstate import PublicState
from emberfs.common.layout import chain_for_chunk
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, mgmt_pb2, mgmt_pb2_grpc, storage_pb2, storage_pb2_grpc

__all__ = ["CHUNK", "ROLES", "FaultCluster", "Workload", "WorkloadReport", "main"]

CHUNK = 64 * 1024  # the fault suite's chunk size (the smallest the metaserver takes)
HEARTBEAT_INTERVAL_S = 0.2
HEARTBEAT_TIMEOUT_S = 1.0
HEAL_TIMEOUT_S = 60.0  # a restarted target must be SERVING again within this
HISTORY = 4  # earlier acknowledged contents kept per file, to explain a wrong read
ROLES = ("head", "middle", "tail")


# --- the workload -----------------------------------------------------------------


@dataclass
class WorkloadReport:
    acknowledged: int
    failed_writes: int
    write_failures: list[str]  # the first few
    reads_verified: int
    failed_reads: int
    bad_reads: list[str]  # a read that returned other bytes than the acknowledged ones
    longest_stall_s: float  # longest stretch with no acknowledged write
    longest_write_s: float  # the slowest single acknowledged write
    files: dict[str, bytes]  # every file whose writes were all acknowledged: its bytes
    history: dict[str, list[bytes]]  # each file's earlier acknowledged contents, newest last
    uncertain: set[str]  # files a failed write may have half-changed

    def summary(self) -> str:
        return (
            f"{self.acknowledged} writes acknowledged, {self.failed_writes} failed, "
            f"{self.reads_verified} reads verified ({len(self.bad_reads)} wrong, {self.failed_reads} failed), "
            f"longest stall {self.longest_stall_s:.2f} s, slowest write {self.longest_write_s:.2f} s, "
            f"{len(self.files)} files"
        )


class Workload:
    """Continuous writes and byte-verified reads on `meta` until `stop()`.

    Each writer owns its files (`<prefix>/w<i>-<n>`), so no two writes race on one
    file and the expected bytes of a file are exactly its last acknowledged write's.
    A reader compares a read only if no write to that file began or ended during it.
    All state is touched on the workload's own event loop; the main thread reads the
    counters (ints, safe under the GIL) and gets a consistent report from `stop()`.
    """

    def __init__(
        self,
        meta: str,
        *,
        prefix: str = "/workload",
        writers: int = 2,
        readers: int = 1,
        chunk_size: int = CHUNK,
        files_per_writer: int = 24,
        pause_s: float = 0.01,
        client_timeout_s: float = 30.0,
        seed: int = 5,
    ) -> None:
        self.meta, self.prefix = meta, prefix
        self.writers, self.readers = writers, readers
        self.chunk_size, self.files_per_writer = chunk_size, files_per_writer
        self.pause_s, self.client_timeout_s = pause_s, client_timeout_s
        self._random = random.Random(seed)
        self.acknowledged = 0
        self.failed_writes = 0
        self.reads_verified = 0
        self.failed_reads = 0
        self._failures: list[str] = []
        self._bad_reads: list[str] = []
        self._files: dict[str, bytes] = {}
        self._versions: dict[str, int] = {}
        self._history: dict[str, list[bytes]] = {}
        self._busy: set[str] = set()
        self._uncertain: set[str] = set()
        self._ack_times: list[float] = []
        self._longest_write = 0.0
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-workload", daemon=True)

    # -- control (main thread) --------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Workload:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the workload did not start within {timeout:g} s")
        if self._error is not None:
            raise RuntimeError("the workload failed to start") from self._error
        return self

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def wait_acks(self, more: int, timeout: float = 30.0) -> None:
        """Block until `more` further writes are acknowledged (AssertionError after timeout)."""
        target = self.acknowledged + more
        deadline = time.monotonic() + timeout
        while self.acknowledged < target:
            if self._error is not None:
                raise RuntimeError("the workload crashed") from self._error
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"only {self.acknowledged - target + more} of {more} more writes acknowledged in {timeout:g} s "
                    f"({self.failed_writes} failed; first failures: {self._failures[:3]})"
                )
            time.sleep(0.02)

    def longest_stall(self, since: float | None = None, until: float | None = None) -> float:
        """The longest time with no acknowledged write between `since` and `until`
        (time.monotonic() values; default: the whole run up to now)."""
        start = self._started_at if since is None else since
        end = time.monotonic() if until is None else until
        times = [t for t in list(self._ack_times) if start <= t <= end]
        edges = [start, *times, end]
        return max(b - a for a, b in itertools.pairwise(edges))

    def stop(self, timeout: float = 60.0) -> WorkloadReport:
        """Let the writes in flight finish, stop, and report."""
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the workload did not stop within {timeout:g} s (a write hangs?)")
        if self._error is not None:
            raise RuntimeError("the workload crashed") from self._error
        return WorkloadReport(
            acknowledged=self.acknowledged,
            failed_writes=self.failed_writes,
            write_failures=self._failures[:5],
            reads_verified=self.reads_verified,
            failed_reads=self.failed_reads,
            bad_reads=self._bad_reads[:5],
            longest_stall_s=self.longest_stall(until=self._ack_times[-1] if self._ack_times else None),
            longest_write_s=self._longest_write,
            files=dict(self._files),
            history={path: list(old) for path, old in self._history.items()},
            uncertain=set(self._uncertain),
        )

    # -- the loop (workload thread) ---------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the main thread by start/wait/stop
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        # Many attempts, short backoff: the metaserver's restart must not fail a write
        # whose only problem is a second of silence (chunk I/O retries to the deadline).
        retry = RetryPolicy(max_attempts=60, max_delay=0.5, attempt_timeout=5.0)
        async with Client(self.meta, uid=0, gid=0, groups=[], timeout=self.client_timeout_s, retry=retry) as fs:
            await fs.makedirs(self.prefix, exist_ok=True)
            self._started_at = time.monotonic()
            self._ready.set()
            tasks = [asyncio.create_task(self._writer(fs, i)) for i in range(self.writers)]
            tasks += [asyncio.create_task(self._reader(fs)) for _ in range(self.readers)]
            await asyncio.gather(*tasks)

    async def _writer(self, fs: Client, writer: int) -> None:
        rand = random.Random(self._random.random())
        own: list[str] = []
        made = 0
        while not self._stopping.is_set():
            if len(own) < 3 or (len(own) < self.files_per_writer and rand.random() < 0.4):
                path = f"{self.prefix}/w{writer}-{made}"
                made += 1
                await self._write(fs, path, own, lambda old: self._payload(rand), whole=True)
            elif rand.random() < 0.6:
                path = rand.choice(own)
                await self._write(fs, path, own, lambda old: self._overwrite(rand, old), whole=False)
            else:
                await self._write(fs, rand.choice(own), own, lambda old: self._payload(rand), whole=True)
            await asyncio.sleep(self.pause_s)

    def _payload(self, rand: random.Random) -> tuple[int, bytes]:
        size = rand.choice([1, 100, self.chunk_size - 1, self.chunk_size, self.chunk_size + 7]) + rand.randrange(
            2 * self.chunk_size
        )
        return 0, rand.randbytes(size)

    def _overwrite(self, rand: random.Random, old: bytes) -> tuple[int, bytes]:
        offset = rand.randrange(len(old) + 1)
        return offset, rand.randbytes(rand.randrange(1, self.chunk_size + 100))

    async def _write(
        self, fs: Client, path: str, own: list[str], make: Callable[[bytes], tuple[int, bytes]], *, whole: bool
    ) -> None:
        old = self._files.get(path, b"")
        offset, piece = make(old)
        expected = piece if whole else old[:offset] + piece + old[offset + len(piece) :]
        self._busy.add(path)
        began = time.monotonic()
        try:
            if whole:
                await fs.write_file(path, piece)
            else:
                async with fs.open(path, "r+b") as f:
                    await f.seek(offset)
                    await f.write(piece)
        except Exception as exc:  # noqa: BLE001 - every failure is data for the report
            self.failed_writes += 1
            if len(self._failures) < 20:
                self._failures.append(f"{path} at {time.monotonic() - self._started_at:.2f} s: {exc!r}")
            self._files.pop(path, None)
            self._uncertain.add(path)
            if path in own:
                own.remove(path)
        else:
            done = time.monotonic()
            self.acknowledged += 1
            self._ack_times.append(done)
            self._longest_write = max(self._longest_write, done - began)
            if path in self._files:
                self._history.setdefault(path, []).append(self._files[path])
                del self._history[path][:-HISTORY]
            self._files[path] = expected
            self._versions[path] = self._versions.get(path, 0) + 1
            if path not in own:
                own.append(path)
        finally:
            self._busy.discard(path)

    async def _reader(self, fs: Client) -> None:
        rand = random.Random(self._random.random())
        while not self._stopping.is_set():
            quiet = [p for p in self._files if p not in self._busy]
            if not quiet:
                await asyncio.sleep(0.05)
                continue
            path = rand.choice(quiet)
            version = self._versions.get(path)
            try:
                data = await fs.read_file(path)
            except Exception as exc:  # noqa: BLE001
                if path not in self._busy and self._versions.get(path) == version:
                    self.failed_reads += 1
                    if len(self._bad_reads) < 20 and not isinstance(exc, (OSError, TimeoutError)):
                        self._bad_reads.append(f"{path}: read raised {exc!r}")
                continue
            if path in self._busy or self._versions.get(path) != version or path not in self._files:
                continue  # a write began or ended meanwhile: either content is right
            expected = self._files[path]
            if data == expected:
                self.reads_verified += 1
            else:
                at = time.monotonic() - self._started_at
                why = _difference(expected, data, self._history.get(path, ()), self.chunk_size)
                self._bad_reads.append(f"{path} at {at:.2f} s (write {version}): {why}")
            await asyncio.sleep(self.pause_s)


def st_chunk(fs: SyncClient, path: str) -> int:
    try:
        return fs.stat(path).chunk_size
    except OSError:
        return CHUNK


def _difference(expected: bytes, got: bytes, history: Sequence[bytes] = (), chunk_size: int = CHUNK) -> str:
    """Where `got` departs from `expected`, and what the first wrong chunk holds instead:
    zeros, or an earlier acknowledged content of the file (a replica that missed writes)."""
    if got == expected:
        return "identical"
    # The shorter side ends the scan: past it, the first difference is the length itself.
    first = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
                 min(len(expected), len(got)))
    index = first // chunk_size
    span = slice(index * chunk_size, (index + 1) * chunk_size)
    held = got[span]
    if not held.strip(b"\0"):
        what = "zeros"
    else:
        back = [n for n, old in enumerate(reversed(history), 1) if old[span] == held]
        what = f"the bytes of the write {back[0]} before the last" if back else "bytes of no known write"
    return f"{len(got)} bytes (expected {len(expected)}), first difference at {first} (chunk {index}: {what})"


# --- the cluster ------------------------------------------------------------------


class FaultCluster:
    """A running LocalCluster to break, and the questions asked of it while it breaks
    and heals: which server holds which role of a chain, has a target reached a state,
    do files read back. All blocking (call from the main thread)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.meta = cluster.meta_address
        # Raw GetRouting with known_version 0: a Client's cached routing is refreshed
        # only when the routing version moves, and targets' chunk counts do not move it.
        self._channel = grpc.insecure_channel(self.meta, options=channel_options())
        self._mgmt = mgmt_pb2_grpc.MgmtStub(self._channel)

    def close(self) -> None:
        self._channel.close()
        for proc in [self.cluster.meta, *self.cluster.storage]:
            if proc.running and proc.pid is not None:
                os.kill(proc.pid, signal.SIGCONT)  # a SIGSTOPped server must be able to stop
        self.cluster.stop(grace=5.0)

    @property
    def storage(self) -> list[ServerProcess]:
        return self.cluster.storage

    def view(self) -> RoutingView:
        """The manager's routing now (ConnectionError while the metaserver is down)."""
        request = mgmt_pb2.GetRoutingRequest(header=common_pb2.RequestHeader(client_id="faults"), known_version=0)
        try:
            return RoutingView(self._mgmt.GetRouting(request, timeout=5.0).routing)
        except grpc.RpcError as exc:
            raise ConnectionError(f"GetRouting: {exc.code()}") from None

    def chain_id(self) -> int:
        return self.view().chain_ids()[0]

    def role(self, name: str, chain_id: int | None = None) -> int:
        """The target that is head, middle or tail of the chain's serving targets."""
        chain = self.view().chain(chain_id or self.chain_id())
        serving = chain.serving
        if len(serving) != len(ROLES):
            raise RuntimeError(f"a role needs {len(ROLES)} replicas serving: {chain}")
        return serving[ROLES.index(name)]

    def server_of(self, target_id: int) -> ServerProcess:
        return self.storage[self.view().node_of(target_id) - 1]

    def state_of(self, target_id: int) -> PublicState | None:
        view = self.view()
        return view.chain(view.targets[target_id].chain_id).state_of(target_id)

    def wait_for(self, what: str, check: Callable[[RoutingView], bool], timeout: float = 30.0) -> float:
        """Poll the routing until check(view) holds; the seconds it took."""
        began = time.monotonic()
        deadline = began + timeout
        while True:
            try:
                if check(self.view()):
                    return time.monotonic() - began
            except (ConnectionError, TimeoutError):
                pass  # the metaserver is restarting
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not within {timeout:g} s: {what}\n{self.describe()}")
            time.sleep(0.05)

    def wait_state(self, target_id: int, state: PublicState, timeout: float = 30.0) -> float:
        def check(view: RoutingView) -> bool:
            return view.chain(view.targets[target_id].chain_id).state_of(target_id) == state

        return self.wait_for(f"target {target_id} {state.name}", check, timeout)

    def wait_all_serving(self, timeout: float = HEAL_TIMEOUT_S) -> float:
        def check(view: RoutingView) -> bool:
            return all(n.alive for n in view.proto.nodes) and not cluster_problems(view.proto)

        return self.wait_for("every node alive and every target SERVING", check, timeout)

    def describe(self) -> str:
        """The chain table and each server's log tail, for a failure message."""
        lines = []
        try:
            view = self.view()
            lines += [f"routing v{view.version}: {c}" for c in view.chains.values()]
            lines += [f"node {n.node_id} alive={n.alive}" for n in view.proto.nodes]
        except Exception as exc:  # noqa: BLE001
            lines.append(f"(no routing: {exc!r})")
        for name, proc in self.cluster.processes():
            lines.append(f"--- {name} ({'running' if proc.running else 'down'}), log tail:")
            lines.append(proc.log_tail(15))
        return "\n".join(lines)

    def mismatches(self, files: dict[str, bytes], history: dict[str, list[bytes]] | None = None) -> list[str]:
        """Every file whose bytes differ from `files`, read by a fresh client."""
        wrong = []
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
            for path, expected in sorted(files.items()):
                try:
                    data = fs.read_file(path)
                except OSError as exc:
                    wrong.append(f"{path}: {exc!r}")
                    continue
                if data != expected:
                    why = _difference(expected, data, (history or {}).get(path, ()), st_chunk(fs, path))
                    wrong.append(f"{path}: {why}")
        return wrong

    def replica_divergence(self, files: dict[str, bytes], history: dict[str, list[bytes]] | None = None) -> list[str]:
        """Every (file, chunk, serving replica) whose bytes differ from `files`: each
        replica read on its own (raw Storage.Read naming the target), so a replica that
        missed an update shows even when the client happens to read another."""
        wrong = []
        view = self.view()
        client_id = f"faults-{os.getpid()}"
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
            layouts = {path: fs.stat(path) for path in files}
        channels: dict[str, grpc.Channel] = {}
        try:
            for n, (path, expected) in enumerate(sorted(files.items())):
                st = layouts[path]
                for index in range((len(expected) + st.chunk_size - 1) // st.chunk_size):
                    want = expected[index * st.chunk_size : (index + 1) * st.chunk_size]
                    chain = view.chain(chain_for_chunk(st.chain_ids, st.stripe, index))
                    for target in chain.serving:
                        address = view.address_of(target)
                        if address not in channels:
                            channels[address] = grpc.insecure_channel(address, options=channel_options())
                        stub = storage_pb2_grpc.StorageStub(channels[address])
                        request = storage_pb2.ReadRequest(
                            header=common_pb2.RequestHeader(client_id=client_id, request_id=n * 1000 + index + 1),
                            chain_id=chain.chain_id, chain_version=chain.chain_version,
                            chunk=storage_pb2.ChunkId(inode_id=st.st_ino, chunk_index=index),
                            offset=0, length=len(want), target_id=target,
                        )
                        try:
                            got = stub.Read(request, timeout=10.0).data
                        except grpc.RpcError as exc:
                            wrong.append(f"{path} chunk {index} on target {target}: {exc.code()} {exc.details()}")
                            continue
                        got = got.ljust(len(want), b"\0")
                        if got != want:
                            olds = [old[index * st.chunk_size : (index + 1) * st.chunk_size].ljust(len(want), b"\0")
                                    for old in (history or {}).get(path, ())]
                            why = _difference(want, got, olds, st.chunk_size)
                            wrong.append(f"{path} chunk {index} on target {target}: {why}")
        finally:
            for channel in channels.values():
                channel.close()
        return wrong


# --- the measurement ------------------------------------------------------------------

_RESYNC_DONE = re.compile(
    r"resync chain \d+ v\d+: target \d+ -> (?P<dest>\d+) done: (?P<chunks>\d+) chunks sent "
    r"\((?P<mib>[\d.]+) MiB\), (?P<removed>\d+) removed, .* in (?P<seconds>[\d.]+) s"
)


@dataclass
class Resync:
    chunks: int
    mib: float
    seconds: float

    @property
    def mib_per_s(self) -> float:
        return self.mib / self.seconds if self.seconds > 0 else 0.0


def resyncs_into(logs: Sequence[Path], target_id: int, *, after: int = 0) -> list[Resync]:
    """The resyncs to target_id that the storage logs report done (INFO lines of the
    source's resync worker), past byte offset `after` of each log."""
    found = []
    for log in logs:
        try:
            with open(log, "rb") as f:
                f.seek(after)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            continue
        for match in _RESYNC_DONE.finditer(text):
            if int(match["dest"]) == target_id:
                found.append(Resync(int(match["chunks"]), float(match["mib"]), float(match["seconds"])))
    return found


def _say(text: str) -> None:
    print(f"[failover {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _bulk_write(meta: str, prefix: str, mib: int, chunk_size: int) -> dict[str, bytes]:
    """`mib` MiB of new files (4 chunks each) through a SyncClient: what the target
    that is down misses, so its resync has something to carry."""
    files = {}
    size = 4 * chunk_size
    with SyncClient(meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
        fs.makedirs(prefix, exist_ok=True)
        for i in range(max(1, mib * (1 << 20) // size)):
            data = os.urandom(size)
            fs.write_file(f"{prefix}/bulk-{i}", data)
            files[f"{prefix}/bulk-{i}"] = data
    return files


def measure(data_dir: Path, *, role: str, chunk_size: int, down_mib: int, warmup_s: float, after_s: float) -> int:
    cluster = LocalCluster(data_dir, nodes=3, replicas=3, chunk_size=chunk_size,
                           heartbeat_interval=HEARTBEAT_INTERVAL_S, heartbeat_timeout=HEARTBEAT_TIMEOUT_S)
    cluster.start(timeout=60.0, progress=_say)
    faults = FaultCluster(cluster)
    try:
        load = Workload(faults.meta, chunk_size=chunk_size).start()
        _say(f"workload running; warming up {warmup_s:g} s")
        time.sleep(warmup_s)
        victim = faults.role(role)
        server = faults.server_of(victim)
        logs = [p.log_path for p in cluster.storage]
        offsets = {p: p.stat().st_size if p.exists() else 0 for p in logs}
        _say(f"kill -9 the {role} (target {victim}, pid {server.pid})")
        killed_at = time.monotonic()
        server.kill()
        detect_s = faults.wait_state(victim, PublicState.OFFLINE, timeout=30.0)
        load.wait_acks(10, timeout=60.0)
        _say(f"target {victim} OFFLINE after {detect_s:.2f} s; writing {down_mib} MiB while it is down")
        bulk = _bulk_write(faults.meta, "/missed", down_mib, chunk_size)
        restarted_at = time.monotonic()
        stall_s = load.longest_stall(killed_at, restarted_at)
        server.restart()
        _say(f"restarted node of target {victim}; waiting for SERVING")
        # From restart() returning (the server listening) to the manager publishing SERVING.
        serving_s = faults.wait_state(victim, PublicState.SERVING, timeout=HEAL_TIMEOUT_S)
        _say(f"target {victim} SERVING {serving_s:.2f} s after its restart; {after_s:g} s more of writes")
        time.sleep(after_s)
        report = load.stop()
        _say(f"workload stopped: {report.summary()}; reading every file back")
        lost = faults.mismatches({**report.files, **bulk})
        diverged = faults.replica_divergence({**report.files, **bulk})
        resyncs = [r for log in logs for r in resyncs_into([log], victim, after=offsets[log])]
    finally:
        faults.close()
    resync_mib = sum(r.mib for r in resyncs)
    resync_s = sum(r.seconds for r in resyncs)
    rows = [
        ("acknowledged writes", f"{report.acknowledged} (+{len(bulk)} bulk files while down), "
                                f"{report.failed_writes} failed"),
        ("lost acknowledged writes", f"{len(lost)} (of {len(report.files) + len(bulk)} files read back)"),
        ("reads verified during the run", f"{report.reads_verified} ({len(report.bad_reads)} wrong)"),
        ("failure detection (kill->OFFLINE)", f"{detect_s:.2f} s"),
        ("longest write stall in failover", f"{stall_s:.2f} s"),
        ("restart -> SERVING", f"{serving_s:.2f} s"),
        ("resync", f"{sum(r.chunks for r in resyncs)} chunks, {resync_mib:.1f} MiB in {resync_s:.2f} s = "
                   f"{resync_mib / resync_s:.1f} MiB/s" if resyncs and resync_s > 0 else "no resync line in the logs"),
        ("replicas byte-identical after", "yes" if not diverged else f"NO, {len(diverged)} chunks differ"),
    ]
    print(f"command: python bench/failover.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"cluster: 3 storage nodes, chains of 3, {chunk_size // 1024} KiB chunks, "
          f"heartbeat {HEARTBEAT_INTERVAL_S:g} s / timeout {HEARTBEAT_TIMEOUT_S:g} s; kill -9 of the {role}")
    for label, value in rows:
        print(f"  {label + ':':<36}{value}")
    for line in lost[:10]:
        print(f"  LOST {line}")
    for line in [*report.bad_reads, *diverged][:10]:
        print(f"  WRONG {line}")
    return 1 if lost or diverged or report.bad_reads else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/failover.py", description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=ROLES, default="middle", help="which server of the chain to kill")
    parser.add_argument("--chunk-size", type=int, default=1 << 20, metavar="BYTES", help="default 1 MiB")
    parser.add_argument("--down-mib", type=int, default=64, metavar="MiB",
                        help="new data written while the target is down (what its resync carries)")
    parser.add_argument("--warmup", type=float, default=3.0, metavar="S", help="writes before the kill")
    parser.add_argument("--after", type=float, default=3.0, metavar="S", help="writes after it serves again")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary directory, removed after")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        return measure(args.data_dir, role=args.role, chunk_size=args.chunk_size, down_mib=args.down_mib,
                       warmup_s=args.warmup, after_s=args.after)
    with tempfile.TemporaryDirectory(prefix="emberfs-failover-") as tmp:
        return measure(Path(tmp), role=args.role, chunk_size=args.chunk_size, down_mib=args.down_mib,
                       warmup_s=args.warmup, after_s=args.after)


if __name__ == "__main__":
    sys.exit(main())
