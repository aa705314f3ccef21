"""The transactional key-value interface every namespace operation runs against.

An engine gives an operation one `KvTxn`: point reads, ordered range scans, puts and
deletes over named tables, all inside one serializable transaction. `MetaTxn` (txn.py)
owns the encodings on top of it; nothing above MetaTxn knows which engine runs.

Engines (docs/ARCHITECTURE.md, "Metadata engines"):

- `LmdbKv`: one LMDB transaction, tables as named databases. LMDB serializes writers
  (one writer thread, group commit), so a transaction never conflicts.
- the etcd engine (metaserver/etcdkv/): optimistic; it records what a transaction read
  and scanned, and its commit compares all of it.

Keys are bytes ordered bytewise; a scan's `end` is exclusive, and `prefix_end(p)` is the
first key after every key that starts with p. Counters (`add`, `total`) are their own
operation so that an engine can make an increment a blind write: under optimistic
concurrency a counter that every create reads and rewrites would make all creates
conflict with each other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, cast

import lmdb

__all__ = ["TABLES", "KvTxn", "LmdbKv", "decode_counter", "encode_counter", "prefix_end"]

TABLES = ("inodes", "dirents", "gc", "idem", "sessions", "mgmt", "counters")


def prefix_end(prefix: bytes) -> bytes | None:
    """The least key greater than every key starting with `prefix` (None: no such key)."""
    raw = bytearray(prefix)
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return None
    raw[-1] += 1
    return bytes(raw)


class KvTxn(Protocol):
    """One transaction's view of the tables (see the module docstring)."""

    def get(self, table: str, key: bytes) -> bytes | None: ...

    def put(self, table: str, key: bytes, value: bytes) -> None: ...

    def prefetch(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """A hint that these (table, key)s are read next: an engine whose reads are round
        trips fetches them together; LMDB, whose reads are memory reads, ignores it."""
        ...

    def delete(self, table: str, key: bytes) -> bool:
        """Remove key; whether it was there."""
        ...

    def scan(self, table: str, start: bytes = b"", end: bytes | None = None, *,
             limit: int = 0) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for start <= key < end (end None: to the table's end), ascending;
        at most `limit` of them when limit > 0. The caller may stop early."""
        ...

    def add(self, table: str, key: bytes, delta: int) -> None:
        """Add delta to the counter at key (0 when absent)."""
        ...

    def total(self, table: str, key: bytes) -> int:
        """The counter's value."""
        ...


COUNTER_BYTES = 16  # i128 big-endian


def encode_counter(value: int) -> bytes:
    return value.to_bytes(COUNTER_BYTES, "big", signed=True)


def decode_counter(raw: bytes | None) -> int:
    return 0 if raw is None else int.from_bytes(raw, "big", signed=True)


class LmdbKv:
    """KvTxn over one LMDB transaction; `dbs` maps table names to database handles."""

    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: lmdb.Transaction, dbs: Any) -> None:
        self._txn, self._dbs = txn, dbs

    def get(self, table: str, key: bytes) -> bytes | None:
        return cast("bytes | None", self._txn.get(key, db=getattr(self._dbs, table)))  # buffers=False

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=getattr(self._dbs, table))

    def prefetch(self, keys: Sequence[tuple[str, bytes]]) -> None:
        return None

    def delete(self, table: str, key: bytes) -> bool:
        return bool(self._txn.delete(key, db=getattr(self._dbs, table)))

    def scan(self, table: str, start: bytes = b"", end: bytes | None = None, *,
             limit: int = 0) -> Iterator[tuple[bytes, bytes]]:
        with self._txn.cursor(db=getattr(self._dbs, table)) as cursor:
            if not (cursor.set_range(start) if start else cursor.first()):
                return
            for count, (raw_key, value) in enumerate(cursor, 1):
                key = bytes(raw_key)  # bytes already (buffers=False): no copy
                if end is not None and key >= end:
                    return
                yield key, cast(bytes, value)
                if count == limit:
                    return

    def add(self, table: str, key: bytes, delta: int) -> None:
        self.put(table, key, encode_counter(self.total(table, key) + delta))  # writers are serial

    def total(self, table: str, key: bytes) -> int:
        return decode_counter(self.get(table, key))
