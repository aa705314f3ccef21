"""The target LMDB: one record per chunk, an index of pending versions, totals.

Named databases in one environment (`<target>/meta`, sync=True, so a returned
write survives power loss):

    chunks   encode_key(chunk_id) -> encode_record(ChunkRecord)
    pending  encode_key(chunk_id) -> b""   (the chunks with a pending version)
    info     b"totals" -> committed chunk count, committed bytes
    gone     inode_prefix(inode_id) -> b""   (files whose chunks GC removed here:
             nothing re-creates them; inode ids are never reused)
    history  encode_key(chunk_id) -> the chunk's recent (request key, version)
             pairs, so a retried client write is recognised after a restart or
             on a new head (craq.py)

`write` changes a chunk's record and keeps the index and totals in step in the
same transaction, so they never disagree after a crash.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator

import lmdb

from .records import ChunkRecord, decode_record, encode_record

__all__ = ["PENDING_REQUEST_SUFFIX", "InodeGone", "TargetDB"]

PENDING_REQUEST_SUFFIX = b"p"  # history key + this: the client request behind the pending version


class InodeGone(Exception):
    """The file's chunks were collected on this target: nothing may re-create them."""


_TOTALS_KEY = b"totals"
_TOTALS = struct.Struct(">QQ")
_SCAN_BATCH = 1024

Change = tuple[bytes, ChunkRecord | None, ChunkRecord | None]  # key, before, after
SideWrite = tuple[str, bytes, bytes | None]  # db name ("gone" or "history"), key, value (None: delete)


class TargetDB:
    """One target's LMDB of chunk records (the module docstring lists its databases);
    the chunk bytes live beside it in files (chunkfiles.py), and ChunkStore owns both."""

    def __init__(self, path: str, *, map_size: int = 1 << 30) -> None:
        self._env = lmdb.open(
            path, map_size=map_size, max_dbs=5, sync=True, metasync=True, readahead=False
        )
        self._chunks = self._env.open_db(b"chunks")
        self._pending = self._env.open_db(b"pending")
        self._info = self._env.open_db(b"info")
        self._side = {"gone": self._env.open_db(b"gone"), "history": self._env.open_db(b"history")}

    def grow(self) -> int:
        """Double the map; only while no transaction is open (at open time). The new size."""
        size = int(self._env.info()["map_size"]) * 2
        self._env.set_mapsize(size)
        return size

    def close(self) -> None:
        self._env.close()

    def get(self, key: bytes) -> ChunkRecord | None:
        with self._env.begin(db=self._chunks) as txn:
            value = txn.get(key)
        return decode_record(value) if value is not None else None

    def get_side(self, db: str, key: bytes) -> bytes | None:
        with self._env.begin(db=self._side[db]) as txn:
            value = txn.get(key)
        return bytes(value) if value is not None else None

    def write(self, key: bytes, before: ChunkRecord | None, after: ChunkRecord | None, *,
              then: Callable[[], None] | None = None, side: Iterable[SideWrite] = (),
              unless_gone: bytes | None = None) -> None:
        """Replace one chunk's record `before` by `after` (None: no record)."""
        self.write_many([(key, before, after)], then=then, side=side, unless_gone=unless_gone)

    def write_many(self, changes: Iterable[Change], *, then: Callable[[], None] | None = None,
                   side: Iterable[SideWrite] = (), unless_gone: bytes | None = None) -> None:
        """Apply several record changes in one durable transaction.

        then: file work that must happen only if the records fit (a commit's rename):
        it runs after every put succeeded and before the transaction commits, so a full
        map refuses the change with the files untouched, and a failure in `then`
        aborts the records.
        unless_gone: an inode prefix; the change is refused (InodeGone) when that file's
        chunks were collected here, checked inside the same transaction so that a
        prepare and a GC's mark can never both succeed out of order."""
        with self._env.begin(write=True) as txn:
            if unless_gone is not None and txn.get(unless_gone, db=self._side["gone"]) is not None:
                raise InodeGone(unless_gone)
            d_chunks = d_bytes = 0
            for key, before, after in changes:
                if after is None:
                    txn.delete(key, db=self._chunks)
                else:
                    txn.put(key, encode_record(after), db=self._chunks)
                if after is not None and after.pending_version is not None:
                    txn.put(key, b"", db=self._pending)
                else:
                    txn.delete(key, db=self._pending)
                for rec, sign in ((before, -1), (after, 1)):
                    if rec is not None and rec.committed:
                        d_chunks += sign
                        d_bytes += sign * rec.length
            if d_chunks or d_bytes:
                raw = txn.get(_TOTALS_KEY, db=self._info)
                chunks, size = _TOTALS.unpack(raw) if raw else (0, 0)
                txn.put(_TOTALS_KEY, _TOTALS.pack(chunks + d_chunks, size + d_bytes), db=self._info)
            for name, key, value in side:
                if value is None:
                    txn.delete(key, db=self._side[name])
                else:
                    txn.put(key, value, db=self._side[name])
            if then is not None:
                then()

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, ChunkRecord]]:
        """Records whose key starts with `prefix`, in key order, read in short
        transactions (a slow consumer never pins an LMDB snapshot)."""
        start = prefix
        while True:
            batch: list[tuple[bytes, bytes]] = []
            with self._env.begin(db=self._chunks) as txn:
                cursor = txn.cursor()
                found = cursor.set_range(start)
                while found and len(batch) < _SCAN_BATCH:
                    key = cursor.key()
                    if not key.startswith(prefix):
                        break
                    batch.append((key, cursor.value()))
                    found = cursor.next()
            yield from ((k, decode_record(v)) for k, v in batch)
            if len(batch) < _SCAN_BATCH:
                return
            start = batch[-1][0] + b"\x00"

    def last_committed(self, prefix: bytes, max_key: bytes) -> tuple[bytes, ChunkRecord] | None:
        """The committed record with the highest key in [prefix, max_key]."""
        with self._env.begin(db=self._chunks) as txn:
            cursor = txn.cursor()
            found = cursor.set_range(max_key)
            if not (found and cursor.key() == max_key):
                found = cursor.prev() if found else cursor.last()
            while found and cursor.key().startswith(prefix):
                rec = decode_record(cursor.value())
                if rec.committed:
                    return bytes(cursor.key()), rec
                found = cursor.prev()
        return None

    def pending_keys(self) -> list[bytes]:
        with self._env.begin(db=self._pending) as txn:
            return [bytes(k) for k in txn.cursor().iternext(keys=True, values=False)]

    def totals(self) -> tuple[int, int, int]:
        """(committed chunks, committed bytes, chunks with a pending version)."""
        with self._env.begin() as txn:
            raw = txn.get(_TOTALS_KEY, db=self._info)
            pending = txn.stat(self._pending)["entries"]
        chunks, size = _TOTALS.unpack(raw) if raw else (0, 0)
        return chunks, size, pending
