"""The namespace on etcd: MetaStore's interface over optimistic transactions.

`EtcdStore` runs each operation as an `OptimisticKv` transaction (optimistic.py) on a
thread of its own pool (etcd calls block), commits it as one etcd Txn, and on a conflict
runs it again on a new snapshot after a jittered pause. A commit whose outcome is
unknown is decided through its marker, never retried blind. Inode and session ids come
from batches (`IdBatches`, one compare-and-put per batch), so creates do not conflict on
an id counter. A housekeeping thread folds counter deltas, prunes idempotency records
and commit markers.

Several metaservers may share one etcd prefix: every decision is in etcd's Txn compares.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from emberfs.common.errors import EmberError, Unavailable
from emberfs.proto import common_pb2, meta_pb2

from .. import idem
from ..allocator import ChainAllocator, NoChains
from ..config import MetaConfig
from ..kv import decode_counter, encode_counter
from ..txn import DIRECTORIES, NEXT_INODE, ROOT_ID, MetaTxn
from .errors import OutcomeUnknown, RevisionCompacted
from .optimistic import ABORTED, COMMITTED, DELTA, Compare, Delete, DeleteRange, Op, OptimisticKv, Put

__all__ = ["Etcd", "EtcdStore", "IdBatches", "OutcomeUnknown"]

log = logging.getLogger("emberfs.metaserver.etcd")

_T = TypeVar("_T")
_U64 = struct.Struct(">Q")

MAX_ATTEMPTS = 64  # conflicts before an operation gives up (Unavailable: the client retries)
BACKOFF_S = (0.001, 0.05)  # first and longest pause between attempts, jittered
RESOLVE_S = 30.0  # how long an unknown outcome is chased before the store gives up
ID_BATCH = 1024
HOUSEKEEPING_S = 5.0
MARKER_TTL_NS = 600 * 10**9  # far past any Txn still in flight
FOLD_LIMIT = 50  # counter deltas folded per transaction
COUNTERS = (b"files", b"directories", b"symlinks", b"used_bytes")


class Etcd(Protocol):
    """What the store needs of an etcd client (adapter.py wraps the real one)."""

    def range(self, start: bytes, end: bytes | None, revision: int,
              limit: int) -> tuple[list[tuple[bytes, bytes, int]], bool, int]: ...

    def get_many(self, keys: Sequence[bytes], revision: int) -> tuple[list[tuple[bytes | None, int]], int]: ...

    def commit(self, compares: list[Compare], ops: list[Op]) -> bool:
        """Apply ops if every compare holds; whether it applied. OutcomeUnknown when the
        answer was lost; Unavailable when the request surely did not apply."""
        ...

    def close(self) -> None: ...


class IdBatches:
    """Unique ids per name, ID_BATCH at a time: each batch is one compare-and-put on the
    name's high-water key, so ids only grow (with gaps), whichever metaserver hands them."""

    def __init__(self, etcd: Etcd, key_of: Callable[[bytes], bytes], floors: dict[bytes, int]) -> None:
        self._etcd, self._key_of, self._floors = etcd, key_of, floors
        self._lock = threading.Lock()
        self._next: dict[bytes, tuple[int, int]] = {}  # name -> (next id, end of the batch)

    def __call__(self, name: bytes) -> int:
        with self._lock:
            at, end = self._next.get(name, (0, 0))
            if at >= end:
                at, end = self._take(name)
            self._next[name] = (at + 1, end)
            return at

    def _take(self, name: bytes) -> tuple[int, int]:
        key = self._key_of(name)
        for _ in range(MAX_ATTEMPTS):
            rows, _, _ = self._etcd.range(key, None, 0, 1)
            high, mod = (decode_counter(rows[0][1]), rows[0][2]) if rows else (0, 0)
            high = max(high, self._floors.get(name, 0))
            try:
                if self._etcd.commit([Compare(key, "mod", "equal", mod)], [Put(key, encode_counter(high + ID_BATCH))]):
                    return high + 1, high + ID_BATCH + 1
            except OutcomeUnknown:
                pass  # applied or not, the next read sees the truth; a lost batch is only a gap
            _pause(0)
        raise Unavailable(f"could not take a batch of {name.decode()} ids: too much contention")


class EtcdStore:
    """MetaStore's interface (write, write_sync, read, aread, close) on etcd."""

    def __init__(
        self,
        config: MetaConfig,
        etcd: Etcd,
        *,
        root: bytes = b"emberfs/",
        max_ops: int = 128,
        allocator: ChainAllocator | None = None,
        clock: Callable[[], int] = time.time_ns,
        threads: int = 16,
    ) -> None:
        self.config, self.etcd, self.root, self.max_ops = config, etcd, root, max_ops
        self.allocator: ChainAllocator = allocator or NoChains()
        self.clock = clock
        self.stats = {"commits": 0, "conflicts": 0, "unknown": 0, "idem_pruned": 0, "folded": 0}
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="meta-etcd")
        self._ids = IdBatches(etcd, lambda name: root + b"ids/" + name, {NEXT_INODE: ROOT_ID})
        self._closed = threading.Event()
        self._create_root()
        self._housekeeper = threading.Thread(target=self._housekeeping, name="meta-etcd-housekeeping", daemon=True)
        self._housekeeper.start()

    # -- public API (as MetaStore's) ----------------------------------------------------
    async def write(self, fn: Callable[[MetaTxn], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.write_sync, fn)

    def write_sync(self, fn: Callable[[MetaTxn], _T]) -> _T:
        return self._run(fn, commit=True)

    def read(self, fn: Callable[[MetaTxn], _T]) -> _T:
        """fn on one snapshot; a read changes nothing, so it never commits."""
        return self._run(fn, commit=False)

    async def aread(self, fn: Callable[[MetaTxn], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.read, fn)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._pool.shutdown(wait=True)
        self._housekeeper.join(timeout=HOUSEKEEPING_S + 1)
        self.etcd.close()

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------
    def _marker(self) -> bytes:
        return self.root + b"txn/" + _U64.pack(self.clock()) + os.urandom(8)

    def _context(self, kv: OptimisticKv) -> MetaTxn:
        return MetaTxn(kv, config=self.config, allocator=self.allocator, now_ns=self.clock(), ids=self._ids)

    def _run(self, fn: Callable[[MetaTxn], _T], *, commit: bool) -> _T:
        if self._closed.is_set():
            raise Unavailable("the metadata store is closed")
        for attempt in range(MAX_ATTEMPTS):
            kv = OptimisticKv(self.etcd, self.root, self._marker())
            try:
                result = fn(self._context(kv))  # an op's own error ends it: it saw one consistent snapshot
            except RevisionCompacted:  # its snapshot is gone: as a conflict
                self.stats["conflicts"] += 1
                _pause(attempt)
                continue
            plan = kv.commit_plan(self.max_ops) if commit else None
            if plan is None:  # a read, or a write that wrote nothing: the snapshot decided it
                return result
            try:
                applied = self.etcd.commit(plan.compares, plan.ops)
            except OutcomeUnknown:
                self.stats["unknown"] += 1
                applied = self._resolve(plan.marker)
            if applied:
                self.stats["commits"] += 1
                return result
            self.stats["conflicts"] += 1
            _pause(attempt)
        raise Unavailable(f"a metadata operation conflicted {MAX_ATTEMPTS} times in a row; try again")

    def _resolve(self, marker: bytes) -> bool:
        """Whether the Txn with this marker applied: fence it out, or find it committed."""
        deadline = time.monotonic() + RESOLVE_S
        attempt = 0
        while time.monotonic() < deadline:
            try:
                if self.etcd.commit([Compare(marker, "version", "equal", 0)], [Put(marker, ABORTED)]):
                    return False  # fenced: the lost Txn's own compare on the marker can no longer hold
                rows, _, _ = self.etcd.range(marker, None, 0, 1)
                return bool(rows) and rows[0][1] == COMMITTED
            except Unavailable:  # OutcomeUnknown too: the fence is safe to send again
                attempt += 1
                _pause(attempt)
        raise Unavailable("the outcome of a metadata commit is unknown: etcd did not answer for "
                          f"{RESOLVE_S:g} s; the operation may or may not have happened")

    # -- setup and housekeeping ----------------------------------------------------------
    def _create_root(self) -> None:
        def make_root(tx: MetaTxn) -> None:
            if tx.get_inode(ROOT_ID) is not None:
                return
            now = tx.now_ns
            tx.put_inode(meta_pb2.Inode(
                inode_id=ROOT_ID, type=meta_pb2.DIRECTORY, mode=0o755, uid=0, gid=0, nlink=2,
                atime_ns=now, mtime_ns=now, ctime_ns=now, parent_id=ROOT_ID,
                layout=common_pb2.Layout(chunk_size=self.config.default_chunk_size,
                                         stripe=self.config.default_stripe)))
            tx.add_counter(DIRECTORIES, 1)

        self.write_sync(make_root)

    def _housekeeping(self) -> None:
        while not self._closed.wait(HOUSEKEEPING_S):
            try:
                self.housekeep()
            except EmberError as exc:  # etcd away for a while: the next pass tries again
                log.warning("metadata housekeeping failed: %s", exc.message)
            except Exception:
                log.exception("metadata housekeeping failed")

    def housekeep(self) -> None:
        """Fold counter deltas, prune idempotency records and old commit markers."""
        for name in COUNTERS:
            self.stats["folded"] += self._fold(self.root + b"counters/" + name)
        cutoff = self.clock() - int(self.config.idem_ttl_s * 1e9)
        limit = max(1, self.max_ops // 3)  # each record: a compare and two deletes
        self.stats["idem_pruned"] += self.write_sync(lambda tx: idem.prune(tx, cutoff, limit))
        old = self.root + b"txn/" + _U64.pack(max(0, self.clock() - MARKER_TTL_NS))
        self.etcd.commit([], [DeleteRange(self.root + b"txn/", old)])

    def _fold(self, base: bytes) -> int:
        """Sum up to FOLD_LIMIT deltas into the counter's base key in one Txn."""
        rows, _, _ = self.etcd.range(base, base + b"\x01", 0, FOLD_LIMIT + 1)
        mine = [row for row in rows if row[0] == base or row[0].startswith(base + DELTA)]
        deltas = [row for row in mine if row[0] != base]
        if len(deltas) < 2:
            return 0
        total = sum(decode_counter(row[1]) for row in mine)
        compares = [Compare(key, "mod", "equal", mod) for key, _, mod in mine]
        if not any(key == base for key, _, _ in mine):
            compares.append(Compare(base, "mod", "equal", 0))
        ops: list[Op] = [Delete(key) for key, _, _ in deltas]
        ops.append(Put(base, encode_counter(total)))
        try:
            return len(deltas) if self.etcd.commit(compares, ops) else 0
        except OutcomeUnknown:
            return 0  # applied or not, the sum is the same either way


def _pause(attempt: int) -> None:
    low, high = BACKOFF_S
    time.sleep(random.uniform(0, min(high, low * (2 ** min(attempt, 10)))))

