"""The hostile scenarios' load (`RacingLoad`, on a background thread with its own
event loop):

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
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
from typing import Any

import crc32c
import grpc

from emberfs.client import Client, RetryPolicy, SyncClient
from emberfs.client._plan import effective_stripe
from emberfs.common.layout import chain_for_chunk
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, storage_pb2, storage_pb2_grpc

from ._slots import CHUNKS_PER_FILE, SHARED, SLOTS, LoadReport, OwnFile, Shape, SlotWrite, Witness, slot_problem

CANCEL_DEADLINE_MAX_S = 0.02  # deadlines of the cancelled writes: 1 ms up to this
HOT_SHARE = 0.7  # writes meet on /hostile/s0 (this share) and on its chunk 0 (this share again)


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
