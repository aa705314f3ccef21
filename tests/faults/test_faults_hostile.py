"""Hostile timings, black-box (issue 15): several writers overwrite the same chunks
while storage servers are killed (-9) and restarted at once, inside the heartbeat
timeout, head, middle and tail in turn, or while writes are cancelled at their
deadline; then every replica is judged on its own.

The cluster: a metaserver and 3 storage servers (one chain of 3 replicas), a heartbeat
every 0.2 s and a heartbeat timeout of 3 s: short, but longer than a storage server's
restart (0.2-1.6 s on a loaded 2-core machine, frozen moments included), so a server
killed and restarted at once is back before the manager notices. That is the timing
under test; the older fault scenarios wait for OFFLINE first. Chunks are 64 KiB for
the kills and 1 MiB for the cancellations (a prepare long enough to be cancelled in).

The load (`RacingLoad`, on a background thread with its own event loop):
- shared files /hostile/s0 and /hostile/s1, 2 chunks each, every chunk cut into 4
  slots. Writers open them "r+b" and overwrite 1-8 slots (a WRITE inside the chunk) or
  whole chunks (a REPLACE) per session, with random bytes, so every slot payload ever
  written is unique and names its write; most writes meet on /hostile/s0 chunk 0;
- each writer also rewrites a file of its own with `write_file` (REMOVE of the old
  chunks, then REPLACE: what an interrupted `wb` overwrite leaves half done);
- a reader checks that every slot it reads holds the payload of some write issued to
  that slot (never a mix, never bytes of no write);
- a witness reads every shared chunk from every serving replica on its own (raw
  Storage.Read naming the target) all along, and judges the answers (`Witness`): one
  version never has two contents, reads never go back, no replica answers DATA_LOSS;
- in the cancellation scenario, pairs of raw one-slot Storage.Writes of one chunk at
  the chain's head, the first with a 1-20 ms deadline and the second right behind it,
  and a Client on gRPC with a 100 ms per-call deadline, so grpc.aio cancels their
  handlers mid-prepare, mid-forward or mid-commit while other writes of the same chunk
  wait for its lock.

The verdict (`HostileCluster.verdict`), once the load has stopped:
1. wait until every target is SERVING; read every chunk from every target with the
   raw Storage.Read RPC naming the target: all must hold the same (commit version,
   bytes);
2. for each replica in turn, freeze the other storage servers (SIGSTOP) until the
   manager has taken them out (routing shows that replica alone serving), read every
   file through a normal Client, SIGCONT them and wait until the chain is whole again:
   every replica must return the same bytes for every file;
3. the bytes must be what the acknowledged writes allow. Per slot: the payload found
   must belong to a write W of that slot; if W was acknowledged, no acknowledged write
   of that slot may have *begun after W's acknowledgement* (such a write is ordered
   after W, so a replica still showing W lost it). A write of a session counts as
   acknowledged when its close() returned (the earliest moment its writer knows: a
   later "end" only makes the rule more lenient, never wrong). A write never
   acknowledged (failed, or cancelled at its deadline) may take effect at any moment
   after it began, even after later writes (its request may still be in flight), so
   its payload is always allowed: the agreement checks and the witness are what catch
   a cancelled write that landed on one replica only. A writer's own file (nobody
   else writes it) must hold its last write when that write was acknowledged; after a
   failed rewrite only agreement between replicas is judged;
4. every chunk must still be writable: each chunk of each file gets new bytes through
   the Client, which must be acknowledged and read back, from every replica alike;
5. no storage server logged an ERROR (a target failed by a "disk error" a race made,
   a bug answered INTERNAL).

Each scenario prints one summary line (run with -s to see it) and is bounded: writes
for a fixed number of kills or seconds, every wait with a timeout. Every server is
stopped at teardown, SIGSTOPped ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crc32c
import grpc
import pytest

from emberfs.bench.failover_cluster import HEARTBEAT_INTERVAL_S, FaultCluster
from emberfs.client import Client, RetryPolicy, SyncClient
from emberfs.client._launch import LocalCluster
from emberfs.client._plan import effective_stripe
from emberfs.common.errors import from_rpc_error
from emberfs.common.layout import chain_for_chunk
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, storage_pb2, storage_pb2_grpc

CHUNK = 64 * 1024  # the kill scenario's chunk size (the fault suite's)
BIG_CHUNK = 1 << 20  # the cancellation scenario's: a prepare long enough to be cancelled inside
SLOTS = 4
CANCEL_DEADLINE_MAX_S = 0.02  # deadlines of the cancelled writes: 1 ms up to this
CHUNKS_PER_FILE = 2  # few chunks, so writers meet on them often
SHARED = tuple(f"/hostile/s{i}" for i in range(2))
HOT_SHARE = 0.7  # writes meet on /hostile/s0 (this share) and on its chunk 0 (this share again)
HOSTILE_TIMEOUT_S = 3.0  # heartbeat timeout: a restart at once lands inside it
HEAL_S = 60.0
ROLES = ("head", "middle", "tail")
INF = float("inf")


# --- the racing load ---------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """The shared files' geometry: the cluster's chunk size, each chunk in SLOTS slots."""

    chunk: int

    @property
    def slot(self) -> int:
        return self.chunk // SLOTS

    @property
    def file_size(self) -> int:
        return CHUNKS_PER_FILE * self.chunk


@dataclass
class SlotWrite:
    """One write's payload for one slot: `end` is its acknowledgement (inf: none)."""

    payload: bytes
    began: float
    who: str
    end: float = INF

    @property
    def acked(self) -> bool:
        return self.end < INF


@dataclass
class OwnFile:
    """A writer's own file: the bytes of its last acknowledged write, and whether a
    failed write came after it (then its bytes are uncertain)."""

    data: bytes = b""
    uncertain: bool = True


@dataclass
class LoadReport:
    shape: Shape
    acked: int
    failed: int
    cancelled: int  # writes whose deadline passed (raw calls and the hasty client)
    reads: int
    bad_reads: list[str]
    slots: dict[tuple[str, int, int], list[SlotWrite]]
    own: dict[str, OwnFile]
    failures: list[str] = field(default_factory=list)
    witnessed: int = 0  # raw per-replica reads by the witness
    witness_problems: list[str] = field(default_factory=list)


class RawPeers:
    """Raw storage stubs by address and a routing view refreshed at most every 0.3 s:
    what the cancelling writers and the witness use to address replicas themselves."""

    def __init__(self, fs: Client, view: RoutingView) -> None:
        self._fs = fs
        self._view, self._fetched = view, time.monotonic()
        self._channels: dict[str, grpc.aio.Channel] = {}

    @classmethod
    async def open(cls, fs: Client) -> RawPeers:
        return cls(fs, RoutingView(await fs.routing()))

    async def view(self) -> RoutingView:
        if time.monotonic() - self._fetched > 0.3:
            with contextlib.suppress(OSError):  # else keep the view we have
                self._view = RoutingView(await self._fs.routing())
            self._fetched = time.monotonic()
        return self._view

    def stub(self, address: str) -> storage_pb2_grpc.StorageStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address, options=channel_options())
        return storage_pb2_grpc.StorageStub(channel)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


class RacingLoad:
    """Writers racing on the same chunks, a reader, and optionally deadline-cancelled
    writers, on a background thread until `stop()` (see the module docstring)."""

    def __init__(self, meta: str, shape: Shape, *, writers: int = 3, cancellers: int = 0, hasty: bool = False,
                 seed: int = 15, pause_s: float = 0.01, witness_pause_s: float = 0.1,
                 whole_chunk_share: float = 0.35) -> None:
        self.meta, self.shape, self.writers, self.cancellers, self.hasty = meta, shape, writers, cancellers, hasty
        self.pause_s, self.witness_pause_s, self.whole_chunk_share = pause_s, witness_pause_s, whole_chunk_share
        self._seed = random.Random(seed)
        self.acked = self.failed = self.cancelled = self.reads = 0
        self._bad_reads: list[str] = []
        self._failures: list[str] = []
        self.witness = Witness()
        self.slots: dict[tuple[str, int, int], list[SlotWrite]] = {}
        self.own: dict[str, OwnFile] = {}
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hostile-load", daemon=True)
        self._prepare()

    def _prepare(self) -> None:
        """Create the shared files (every slot's first payload, acknowledged at 0)."""
        rand = random.Random(self._seed.random())
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
            fs.makedirs("/hostile", exist_ok=True)
            for path in SHARED:
                payloads = [rand.randbytes(self.shape.slot) for _ in range(CHUNKS_PER_FILE * SLOTS)]
                fs.write_file(path, b"".join(payloads))
                for n, payload in enumerate(payloads):
                    self.slots[(path, n // SLOTS, n % SLOTS)] = [SlotWrite(payload, 0.0, "setup", 0.0)]

    # -- control (main thread) ---------------------------------------------------------

    def start(self, timeout: float = 30.0) -> RacingLoad:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError("the racing load did not start") from self._error
        return self

    def wait_acks(self, more: int, timeout: float = 30.0) -> None:
        target, deadline = self.acked + more, time.monotonic() + timeout
        while self.acked < target:
            if self._error is not None:
                raise RuntimeError("the racing load crashed") from self._error
            if time.monotonic() > deadline:
                raise TimeoutError(f"{more} more writes not acknowledged within {timeout:g} s "
                                   f"({self.failed} failed; first failures {self._failures[:3]})")
            time.sleep(0.02)

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def stop(self, timeout: float = 60.0) -> LoadReport:
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the racing load did not stop within {timeout:g} s")
        if self._error is not None:
            raise RuntimeError("the racing load crashed") from self._error
        return LoadReport(self.shape, self.acked, self.failed, self.cancelled, self.reads, self._bad_reads[:10],
                          self.slots, self.own, self._failures[:10], self.witness.reads, self.witness.problems[:10])

    # -- the loop (load thread) --------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start/wait_acks/stop
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        retry = RetryPolicy(max_attempts=60, max_delay=0.5, attempt_timeout=5.0)
        async with Client(self.meta, uid=0, gid=0, groups=[], timeout=30.0, retry=retry) as fs:
            layouts = {path: await fs.stat(path) for path in SHARED}
            jobs = [self._writer(fs, f"w{i}", random.Random(self._seed.random())) for i in range(self.writers)]
            jobs.append(self._reader(fs, random.Random(self._seed.random())))
            jobs.append(self._witness(fs, layouts))
            jobs += [self._canceller(fs, layouts, f"c{i}", random.Random(self._seed.random()))
                     for i in range(self.cancellers)]
            if self.hasty:
                jobs.append(self._hasty_writer(random.Random(self._seed.random())))
            self._ready.set()
            await asyncio.gather(*jobs)

    def _begin(self, path: str, chunk: int, slots: list[int], who: str,
               rand: random.Random) -> tuple[bytes, int, list[SlotWrite]]:
        """New payloads for `slots` of a chunk, recorded before the write is sent."""
        now = time.monotonic()
        records = [SlotWrite(rand.randbytes(self.shape.slot), now, who) for _ in slots]
        for slot, record in zip(slots, records, strict=True):
            self.slots[(path, chunk, slot)].append(record)
        return b"".join(r.payload for r in records), chunk * self.shape.chunk + slots[0] * self.shape.slot, records

    def _done(self, records: list[SlotWrite], error: BaseException | None, what: str, *, writes: int = 1) -> None:
        if error is None:
            now = time.monotonic()
            for record in records:
                record.end = now
            self.acked += writes
            return
        self.failed += writes
        if isinstance(error, (TimeoutError, asyncio.TimeoutError)) or "DEADLINE" in repr(error).upper():
            self.cancelled += writes
        if len(self._failures) < 20:
            self._failures.append(f"{what}: {error!r}"[:300])

    async def _writer(self, fs: Client, who: str, rand: random.Random) -> None:
        own = f"/hostile/own-{who}"
        while not self._stopping.is_set():
            if rand.random() < 0.15:
                await self._rewrite_own(fs, own, rand)
            else:
                await self._overwrite_session(fs, who, rand)
            await asyncio.sleep(self.pause_s)

    async def _overwrite_session(self, fs: Client, who: str, rand: random.Random) -> None:
        """Open a shared file "r+b" and overwrite 1-8 slots or whole chunks in it: the file
        object sends each chunk update in the background as the next write comes, so
        the chunk writes follow each other closely. The writes are acknowledged when
        close() returns (the earliest moment the writer knows it)."""
        path = SHARED[0] if rand.random() < HOT_SHARE else rand.choice(SHARED)
        records: list[SlotWrite] = []
        count = rand.randint(1, 8)
        error: BaseException | None = None
        try:
            async with fs.open(path, "r+b") as f:
                for _ in range(count):
                    chunk = 0 if rand.random() < HOT_SHARE else rand.randrange(CHUNKS_PER_FILE)
                    slots = list(range(SLOTS)) if rand.random() < self.whole_chunk_share else [rand.randrange(SLOTS)]
                    data, offset, written = self._begin(path, chunk, slots, who, rand)
                    records += written
                    await f.seek(offset)
                    await f.write(data)
        except Exception as exc:  # noqa: BLE001 - a failed write is data for the verdict
            error = exc
        self._done(records, error, f"{who} {path}: {count} overwrites", writes=count)

    async def _rewrite_own(self, fs: Client, path: str, rand: random.Random) -> None:
        chunk = self.shape.chunk
        data = rand.randbytes(CHUNKS_PER_FILE * chunk - rand.randrange(2) * rand.randrange(1, chunk))
        state = self.own.setdefault(path, OwnFile())
        state.uncertain = True
        try:
            await fs.write_file(path, data)
        except Exception as exc:  # noqa: BLE001
            self._done([], exc, f"write_file {path}")
            return
        state.data, state.uncertain = data, False
        self._done([], None, path)

    async def _hasty_writer(self, rand: random.Random) -> None:
        """Whole-chunk r+b writes from a Client on gRPC whose every call has 100 ms."""
        retry = RetryPolicy(max_attempts=2, max_delay=0.05, attempt_timeout=0.1)
        while not self._stopping.is_set():
            try:
                async with Client(self.meta, uid=0, gid=0, groups=[], timeout=0.1, retry=retry,
                                  transport="grpc") as fs:
                    while not self._stopping.is_set():
                        await self._hasty_write(fs, rand)
            except Exception:  # noqa: BLE001 - the client itself ran out of time: make another
                await asyncio.sleep(0.05)

    async def _hasty_write(self, fs: Client, rand: random.Random) -> None:
        path, chunk = rand.choice(SHARED), rand.randrange(CHUNKS_PER_FILE)
        data, offset, records = self._begin(path, chunk, list(range(SLOTS)), "hasty", rand)
        error: BaseException | None = None
        try:
            async with fs.open(path, "r+b") as f:
                await f.seek(offset)
                await f.write(data)
        except Exception as exc:  # noqa: BLE001
            error = exc
        self._done(records, error, f"hasty {path} chunk {chunk}")
        await asyncio.sleep(self.pause_s)

    async def _canceller(self, fs: Client, layouts: dict[str, Any], who: str, rand: random.Random) -> None:
        """Pairs of raw one-slot WRITEs of one chunk at the chain's head: the first with a
        1-20 ms deadline, the second (other bytes) sent right behind it with a normal
        one, so it waits for the chunk's lock. grpc.aio cancels the first one's handler
        wherever it is when its deadline passes (a WRITE's prepare copies the committed
        chunk, so often inside it), and the second must not overlap what is left of it."""
        client_id, request_id = uuid.uuid4().hex, 0
        peers = await RawPeers.open(fs)
        try:
            while not self._stopping.is_set():
                view = await peers.view()
                path = SHARED[0] if rand.random() < HOT_SHARE else rand.choice(SHARED)
                chunk = 0 if rand.random() < HOT_SHARE else rand.randrange(CHUNKS_PER_FILE)
                st = layouts[path]
                chain = view.chain(chain_for_chunk(st.chain_ids, effective_stripe(st.stripe, st.chain_ids), chunk))
                if chain.head is None:
                    await asyncio.sleep(0.05)
                    continue
                stub = peers.stub(view.address_of(chain.head))
                calls = []
                for deadline in (rand.uniform(0.001, CANCEL_DEADLINE_MAX_S), 10.0):
                    data, offset, records = self._begin(path, chunk, [rand.randrange(SLOTS)], who, rand)
                    request_id += 1
                    request = storage_pb2.WriteRequest(
                        header=common_pb2.RequestHeader(client_id=client_id, request_id=request_id, uid=0, gid=0),
                        chain_id=chain.chain_id, chain_version=chain.chain_version,
                        chunk=storage_pb2.ChunkId(inode_id=st.st_ino, chunk_index=chunk), kind=storage_pb2.WRITE,
                        offset=offset - chunk * self.shape.chunk, data=data, crc32c=crc32c.crc32c(data),
                        length=len(data), chunk_size=self.shape.chunk)
                    calls.append((records, asyncio.ensure_future(stub.Write(request, timeout=deadline))))
                    await asyncio.sleep(0)
                for records, call in calls:
                    error: BaseException | None = None
                    try:
                        await call
                    except grpc.aio.AioRpcError as exc:
                        error = exc
                    self._done(records, error, f"{who} {path} chunk {chunk}")
                await asyncio.sleep(self.pause_s / 2)
        finally:
            await peers.close()

    async def _witness(self, fs: Client, layouts: dict[str, Any]) -> None:
        """Read every shared chunk from every serving replica on its own (raw Read naming
        the target), again and again, and let the Witness judge what they answered."""
        peers = await RawPeers.open(fs)
        try:
            while not self._stopping.is_set():
                view = await peers.view()
                for path, st in layouts.items():
                    for index in range(CHUNKS_PER_FILE):
                        chain = view.chain(chain_for_chunk(st.chain_ids, effective_stripe(st.stripe, st.chain_ids),
                                                           index))
                        for target in chain.serving:
                            stub = peers.stub(view.address_of(target))
                            request = storage_pb2.ReadRequest(
                                header=common_pb2.RequestHeader(client_id="hostile-witness", uid=0, gid=0),
                                chain_id=chain.chain_id, chain_version=chain.chain_version,
                                chunk=storage_pb2.ChunkId(inode_id=st.st_ino, chunk_index=index),
                                offset=0, length=self.shape.chunk, target_id=target)
                            began = time.monotonic()
                            try:
                                reply = await stub.Read(request, timeout=2.0)
                            except grpc.aio.AioRpcError as exc:
                                # Down, frozen or not serving: no answer. A corrupt chunk or a bug: a problem.
                                if exc.code() in (grpc.StatusCode.DATA_LOSS, grpc.StatusCode.INTERNAL):
                                    self.witness.failed((path, index), target, f"{exc.code().name} {exc.details()}")
                                continue
                            self.witness.saw((path, index), target, reply.commit_version, reply.data, began,
                                             time.monotonic())
                await asyncio.sleep(self.witness_pause_s)
        finally:
            await peers.close()

    async def _reader(self, fs: Client, rand: random.Random) -> None:
        while not self._stopping.is_set():
            path = rand.choice(SHARED)
            try:
                data = await fs.read_file(path)
            except Exception:  # noqa: BLE001 - reads may fail while servers die
                await asyncio.sleep(0.05)
                continue
            self.reads += 1
            problem = slot_problem(path, data, self.slots, self.shape, judge_order=False)
            if problem and len(self._bad_reads) < 20:
                self._bad_reads.append(f"read during the run: {problem}")
            await asyncio.sleep(self.pause_s)


class Witness:
    """What replicas answered to raw reads of one chunk, judged as they come:

    - one version, one content: two answers naming the same commit version with
      different bytes mean two replicas committed different writes under one version
      (on the shared files nothing ever removes a chunk, so versions only grow);
    - reads never go back: an answer older than one that was complete before this
      read began (from any replica) means the chain served a version and then an
      older one (CRAQ reads are linearizable: the tail's commit orders them);
    - no corrupt chunk (DATA_LOSS: the committed bytes fail their CRC32C) and no
      internal error from a serving replica.

    These catch a divergence even when a later whole-chunk write heals it before the
    end."""

    def __init__(self) -> None:
        self.reads = 0
        self.problems: list[str] = []
        self._contents: dict[tuple[tuple[str, int], int], tuple[int, int]] = {}  # (chunk, version) -> (crc, target)
        self._done: dict[tuple[str, int], list[tuple[float, int, int]]] = {}  # chunk -> [(end, version, target)]

    def saw(self, chunk: tuple[str, int], target: int, version: int, data: bytes, began: float, end: float) -> None:
        self.reads += 1
        crc = crc32c.crc32c(data)
        first = self._contents.setdefault((chunk, version), (crc, target))
        if first[0] != crc:
            self._problem(f"{chunk[0]} chunk {chunk[1]}: version {version} is {crc:#010x} on target {target} "
                          f"but {first[0]:#010x} on target {first[1]}")
        history = self._done.setdefault(chunk, [])
        before = [(v, t) for e, v, t in history if e < began]
        if before:
            newest = max(before)
            if version < newest[0]:
                self._problem(f"{chunk[0]} chunk {chunk[1]}: target {target} answered version {version} after "
                              f"target {newest[1]} had answered {newest[0]}: a read went back")
        history.append((end, version, target))
        if len(history) > 64:
            newest = max(history, key=lambda seen: seen[1])  # the highest version stays the reference
            del history[:-32]
            if newest not in history:
                history.insert(0, newest)

    def failed(self, chunk: tuple[str, int], target: int, why: str) -> None:
        self._problem(f"{chunk[0]} chunk {chunk[1]}: target {target} answered {why}"[:300])

    def _problem(self, line: str) -> None:
        if len(self.problems) < 20 and line not in self.problems:
            self.problems.append(line)


def slot_problem(path: str, data: bytes, slots: dict[tuple[str, int, int], list[SlotWrite]], shape: Shape, *,
                 judge_order: bool = True) -> str | None:
    """Why `data` (the whole shared file) is not a state the writes allow, or None.

    Every slot must hold the payload of a write of that slot. With judge_order (the
    state after all writes ended), an acknowledged payload must not have been overtaken
    by an acknowledged write of the slot that began after its acknowledgement."""
    if len(data) != shape.file_size:
        return f"{path}: {len(data)} bytes, expected {shape.file_size}"
    for chunk in range(CHUNKS_PER_FILE):
        for slot in range(SLOTS):
            at = chunk * shape.chunk + slot * shape.slot
            held = data[at:at + shape.slot]
            writes = slots[(path, chunk, slot)]
            match = next((w for w in writes if w.payload == held), None)
            if match is None:
                what = "zeros" if not held.strip(b"\0") else "bytes of no write"
                return f"{path} chunk {chunk} slot {slot}: {what}"
            if not judge_order or not match.acked:
                continue
            later = [w for w in writes if w.acked and w.began > match.end]
            if later:
                return (f"{path} chunk {chunk} slot {slot}: holds {match.who}'s write acknowledged at "
                        f"{match.end:.3f}, but {later[-1].who}'s write began at {later[-1].began:.3f} after it "
                        f"and was acknowledged: lost")
    return None


# --- the cluster and its verdict ---------------------------------------------------


class HostileCluster(FaultCluster):
    """FaultCluster (bench/failover_cluster.py) plus the per-replica verdict of this suite."""

    def paths(self, report: LoadReport) -> list[str]:
        return [*SHARED, *sorted(report.own)]

    def replica_states(self, paths: list[str]) -> dict[tuple[str, int], dict[int, Any]]:
        """{(path, chunk): {target: (commit version, bytes) or an error}} for every chunk
        of every file, read from every target of its chain with the raw Read RPC."""
        view = self.view()
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
            layouts = {path: fs.stat(path) for path in paths}
        out: dict[tuple[str, int], dict[int, Any]] = {}
        channels: dict[str, grpc.Channel] = {}
        try:
            for path, st in layouts.items():
                for index in range(-(-st.st_size // st.chunk_size)):
                    chain = view.chain(chain_for_chunk(st.chain_ids, effective_stripe(st.stripe, st.chain_ids), index))
                    for target in chain.targets:
                        address = view.address_of(target.target_id)
                        if address not in channels:
                            channels[address] = grpc.insecure_channel(address, options=channel_options())
                        request = storage_pb2.ReadRequest(
                            header=common_pb2.RequestHeader(client_id="hostile-verdict", uid=0, gid=0),
                            chain_id=chain.chain_id, chain_version=chain.chain_version,
                            chunk=storage_pb2.ChunkId(inode_id=st.st_ino, chunk_index=index),
                            offset=0, length=st.chunk_size, target_id=target.target_id)
                        held = _read_settled(storage_pb2_grpc.StorageStub(channels[address]), request)
                        out.setdefault((path, index), {})[target.target_id] = held
        finally:
            for channel in channels.values():
                channel.close()
        return out

    def read_alone(self, target: int, paths: list[str]) -> dict[str, Any]:
        """Freeze every other storage server until `target` serves alone, read every file
        through a Client, wake them, and wait until the chain is whole again."""
        view = self.view()
        chain_id = view.targets[target].chain_id
        others = [self.storage[view.node_of(t.target_id) - 1] for t in view.chain(chain_id).targets
                  if t.target_id != target]
        for server in others:
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
        try:
            self.wait_for(f"target {target} alone serving", lambda v: v.chain(chain_id).serving == (target,),
                          timeout=30.0)
            got: dict[str, Any] = {}
            with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=30.0) as fs:
                for path in paths:
                    try:
                        got[path] = fs.read_file(path)
                    except OSError as exc:
                        got[path] = repr(exc)
        finally:
            for server in others:
                if server.pid is not None:
                    os.kill(server.pid, signal.SIGCONT)
        self.wait_all_serving(HEAL_S)
        return got

    def verdict(self, report: LoadReport, *, name: str, kills: int = 0) -> None:
        """Judge every replica (module docstring, steps 1-4); print one summary line and
        fail with every problem found."""
        problems: list[str] = []
        self.wait_all_serving(HEAL_S)
        paths = self.paths(report)
        states = self.replica_states(paths)
        raw_split = [f"{path} chunk {index}: " + "; ".join(f"target {t}: {_show(h)}" for t, h in held.items())
                     for (path, index), held in states.items() if len(set(map(repr, held.values()))) != 1]
        problems += [f"replicas disagree (raw reads): {line}" for line in raw_split]
        targets = sorted({t for held in states.values() for t in held})
        alone = {target: self.read_alone(target, paths) for target in targets}
        file_split = [path for path in paths if len({repr(alone[t][path]) for t in targets}) != 1]
        for path in file_split:
            problems.append(f"replicas disagree (each serving alone): {path}: "
                            + "; ".join(f"target {t}: {_show(alone[t][path])}" for t in targets))
        for target in targets:
            for path in SHARED:
                data = alone[target][path]
                if not isinstance(data, bytes):
                    problems.append(f"target {target} alone: {path}: {data}")
                    continue
                why = slot_problem(path, data, report.slots, report.shape)
                if why:
                    problems.append(f"target {target} alone: {why}")
            for path, own in report.own.items():
                if not own.uncertain and alone[target][path] != own.data:
                    problems.append(f"target {target} alone: {path} lost its last acknowledged write "
                                    f"({_show(alone[target][path])}, expected {len(own.data)} bytes)")
        unwritable = self.rewrite_everything(paths)
        problems += unwritable
        after = self.replica_states(paths)
        problems += [f"replicas disagree after the rewrite: {path} chunk {index}: "
                     + "; ".join(f"target {t}: {_show(h)}" for t, h in held.items())
                     for (path, index), held in after.items() if len(set(map(repr, held.values()))) != 1]
        problems += [f"read during the run: {line}" for line in report.bad_reads]
        problems += [f"witness: {line}" for line in report.witness_problems]
        problems += [f"storage log: {line}" for line in self.logged_errors()]
        print(f"\nhostile[{name}]: {kills} kills, {report.acked} writes acknowledged, {report.failed} failed "
              f"({report.cancelled} past their deadline), {report.reads} reads ({len(report.bad_reads)} wrong), "
              f"{report.witnessed} replica reads by the witness ({len(report.witness_problems)} problems); "
              f"replicas agree on {len(states) - len(raw_split)}/{len(states)} chunks (raw reads), "
              f"{len(paths) - len(file_split)}/{len(paths)} files (each serving alone); "
              f"{len(unwritable)} chunks unwritable; {len(problems)} problems", flush=True)
        assert not problems, "\n".join(problems[:30]) + f"\n(first failures: {report.failures[:5]})\n" + self.describe()

    def logged_errors(self) -> list[str]:
        """ERROR lines of the storage servers' logs (a target failed by a "disk error",
        a bug answered INTERNAL): none is expected under these faults."""
        found = []
        for server in self.storage:
            try:
                text = server.log_path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            found += [f"{server.log_path.name}: {line[:300]}" for line in text.splitlines() if " ERROR " in line]
        return found[:10]

    def rewrite_everything(self, paths: list[str]) -> list[str]:
        """Give every chunk of every file new bytes through a Client; each write must be
        acknowledged and read back. Returns the problems."""
        problems = []
        rand = random.Random(1515)
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=30.0) as fs:
            for path in paths:
                st = fs.stat(path)
                size, chunk = st.st_size, st.chunk_size
                expected = bytearray(fs.read_file(path))
                for index in range(-(-size // chunk)):
                    fresh = rand.randbytes(min(chunk, size - index * chunk))
                    try:
                        with fs.open(path, "r+b") as f:
                            f.seek(index * chunk)
                            f.write(fresh)
                    except OSError as exc:
                        problems.append(f"unwritable: {path} chunk {index}: {exc!r}"[:400])
                        continue
                    expected[index * chunk:index * chunk + len(fresh)] = fresh
                if fs.read_file(path) != bytes(expected):
                    problems.append(f"after the rewrite {path} does not read back")
        return problems


def _read_settled(stub: storage_pb2_grpc.StorageStub, request: storage_pb2.ReadRequest,
                  attempts: int = 5) -> Any:
    """(commit version, bytes) of one replica, or its error if it keeps failing (a
    retryable answer is asked again a few times: nothing is written any more)."""
    for attempt in range(1, attempts + 1):
        try:
            reply = stub.Read(request, timeout=10.0)
            return reply.commit_version, reply.data
        except grpc.RpcError as exc:
            retryable = from_rpc_error(exc).retryable
            if not retryable or attempt == attempts:
                return f"{exc.code()} {exc.details()}"
        time.sleep(0.2)
    raise AssertionError("unreachable")


def _show(held: Any) -> str:
    if isinstance(held, tuple):
        version, data = held
        return f"v{version} {len(data)} bytes crc {crc32c.crc32c(data):#010x}"
    if isinstance(held, bytes):
        return f"{len(held)} bytes crc {crc32c.crc32c(held):#010x}"
    return str(held)[:200]


@pytest.fixture
def hostile_cluster(tmp_path: Path) -> Iterator[Callable[[int], HostileCluster]]:
    """`hostile_cluster(chunk_size)` starts the cluster of the module docstring; it is
    stopped at teardown, frozen servers included."""
    started: list[HostileCluster] = []

    def start(chunk_size: int) -> HostileCluster:
        cluster = LocalCluster(tmp_path / "cluster", nodes=3, replicas=3, chunk_size=chunk_size,
                               heartbeat_interval=HEARTBEAT_INTERVAL_S, heartbeat_timeout=HOSTILE_TIMEOUT_S)
        cluster.start(timeout=60.0)
        started.append(HostileCluster(cluster))
        return started[-1]

    yield start
    for faults in started:
        faults.close()  # SIGCONTs any frozen server first


@pytest.fixture
def racing_load() -> Iterator[list[RacingLoad]]:
    """The loads a test starts, stopped at teardown whatever happens."""
    loads: list[RacingLoad] = []
    yield loads
    for load in loads:
        if not load.stopped:
            with contextlib.suppress(Exception):  # teardown: the test has its verdict
                load.stop(timeout=30.0)


# --- the scenarios -----------------------------------------------------------------


KILL_ROUNDS = 3  # each role killed this many times; rounds after the first freeze it first
FREEZE_S = 0.3


def test_kill_9_and_restart_at_once_each_role_under_racing_writers(
        hostile_cluster: Callable[[int], HostileCluster], racing_load: list[RacingLoad]) -> None:
    """kill -9 the head, the middle, the tail (3 times each), restarting it at once,
    while 3 writers overwrite the same chunks and a reader reads; then the verdict.

    In the first round the server is killed as it runs. In the others it dies in the
    window between its successors' commit and its own: its successor is frozen
    (SIGSTOP) for 0.3 s, so that writes reach the victim and wait there with their
    pending version; then the victim is frozen and its successor woken, which commits
    those writes down the chain while the victim cannot commit them or hear the acks;
    0.3 s later the victim is killed (-9) and restarted at once. (The tail has no
    successor: it is frozen 0.3 s, then killed.) All of it stays far inside the
    heartbeat timeout, so the manager never changes the chain."""
    hostile = hostile_cluster(CHUNK)
    load = RacingLoad(hostile.meta, Shape(CHUNK), writers=3).start()
    racing_load.append(load)
    load.wait_acks(20)
    kills, downtimes = 0, []
    for round_ in range(KILL_ROUNDS):
        for role in ROLES:
            hostile.wait_all_serving(HEAL_S)
            victim = hostile.role(role)
            server = hostile.server_of(victim)
            successor = hostile.view().chain(hostile.chain_id()).successor(victim)
            began = time.monotonic()
            if round_:
                _freeze_behind(hostile, server, successor)
            server.kill()  # a frozen process dies of SIGKILL too
            server.restart()
            downtimes.append(time.monotonic() - began)
            kills += 1
            load.wait_acks(15, timeout=45.0)
    report = load.stop()
    print(f"\nkill -9 -> listening again: {min(downtimes):.2f}-{max(downtimes):.2f} s "
          f"(heartbeat timeout {HOSTILE_TIMEOUT_S:g} s)")
    hostile.verdict(report, name="kill -9 + restart at once", kills=kills)


def _freeze_behind(hostile: HostileCluster, server: Any, successor: int | None) -> None:
    """Leave `server` frozen with writes its successors committed and it did not."""
    assert server.pid is not None
    if successor is None:
        os.kill(server.pid, signal.SIGSTOP)
        time.sleep(FREEZE_S)
        return
    follower = hostile.server_of(successor)
    assert follower.pid is not None
    os.kill(follower.pid, signal.SIGSTOP)
    try:
        time.sleep(FREEZE_S)
        os.kill(server.pid, signal.SIGSTOP)
    finally:
        os.kill(follower.pid, signal.SIGCONT)
    time.sleep(FREEZE_S)


CANCEL_SECONDS = 15.0


def test_writes_cancelled_at_their_deadline_race_normal_writers(
        hostile_cluster: Callable[[int], HostileCluster], racing_load: list[RacingLoad]) -> None:
    """Raw Writes with 1-20 ms deadlines and a Client with 100 ms per call race 2
    normal writers on the same chunks for 15 s; then the verdict."""
    hostile = hostile_cluster(BIG_CHUNK)
    load = RacingLoad(hostile.meta, Shape(BIG_CHUNK), writers=2, cancellers=2, hasty=True,
                      witness_pause_s=0.3, whole_chunk_share=0.1).start()
    racing_load.append(load)
    load.wait_acks(20)
    time.sleep(CANCEL_SECONDS)
    report = load.stop()
    assert report.cancelled > 0, "no write was cancelled at its deadline: the scenario did not happen"
    hostile.verdict(report, name="writes cancelled at their deadline")
