"""An optimistic transaction over etcd's revisions: the part of the etcd engine without I/O.

A namespace operation runs against `OptimisticKv` (a KvTxn, kv.py). Reads go to one
snapshot (the revision of the transaction's first read), so everything the operation sees
is one consistent state. Writes are buffered, and reads see them. What the decision
depended on is recorded:

- every key read, with the mod_revision it had (0: absent); a key read again is answered
  from what the first read saw (the snapshot does not change), not from etcd;
- every range scanned, as far as the caller consumed it (a listing stopped after its
  first entry depended on nothing past that entry), plus every key the scan returned.

`commit_plan` turns that into one etcd Txn: compares that every key read still has its
mod_revision (a delete or an update fails it), that no key in a scanned range was
created or changed after the snapshot (`MOD < snapshot + 1` over the range: an insert
into a directory an rmdir found empty fails it), and that the transaction's marker key
does not exist yet; the operations are the buffered puts and deletes plus the marker.
If the compares hold, the Txn applies, and the result is what a serial execution at the
commit revision would give. If not, the engine runs the operation again on a new
snapshot.

The marker makes an unknown outcome (a timeout after the Txn was sent) decidable: the
engine puts "aborted" at the marker if it is still absent. Success means the lost Txn
can never apply (its compare on the marker now fails), so running again is safe; failure
means the marker holds "committed", and the first attempt's result stands.

Counters are deltas: `add` puts a new key under the counter (blind, so creates do not
conflict on the file count) and `total` sums the base and its deltas.

Keys in etcd: `root ‖ table ‖ "/" ‖ key` (root: "emberfs/" by default).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from emberfs.common.errors import FailedPrecondition

from ..kv import decode_counter, encode_counter, prefix_end

__all__ = [
    "ABORTED",
    "COMMITTED",
    "DELTA",
    "CommitPlan",
    "Compare",
    "Delete",
    "DeleteRange",
    "Op",
    "OptimisticKv",
    "Put",
    "Snapshot",
    "counter_delta_key",
]

COMMITTED = b"committed"
ABORTED = b"aborted"
SCAN_PAGE = 256
DELTA = b"\x00"  # counter deltas sort right after their counter's base key


class Snapshot(Protocol):
    """The reads the transaction needs from etcd (the engine's client adapter)."""

    def range(self, start: bytes, end: bytes | None, revision: int,
              limit: int) -> tuple[list[tuple[bytes, bytes, int]], bool, int]:
        """((key, value, mod_revision) for start <= key < end at revision, ascending, at most
        limit (0: all); whether there are more; the revision read at). end None: the
        single key start. revision 0: the latest."""
        ...

    def get_many(self, keys: Sequence[bytes], revision: int) -> tuple[list[tuple[bytes | None, int]], int]:
        """(value or None, mod_revision) of each key at revision, in one round trip; the
        revision read at."""
        ...


@dataclass(frozen=True)
class Compare:
    key: bytes
    target: str  # "mod" or "version"
    op: str  # "equal" or "less"
    value: int
    range_end: bytes = b""


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Delete:
    key: bytes


@dataclass(frozen=True)
class DeleteRange:
    start: bytes
    end: bytes


Op = Put | Delete | DeleteRange


@dataclass(frozen=True)
class CommitPlan:
    compares: list[Compare]
    ops: list[Op]
    marker: bytes


def counter_delta_key(base: bytes, marker: bytes, seq: int) -> bytes:
    """A delta's key: unique per transaction (its marker's tail) and per add in it."""
    return base + DELTA + marker.rsplit(b"/", 1)[-1] + seq.to_bytes(4, "big")


@dataclass
class _Scan:
    start: bytes
    end: bytes  # exclusive; grows as the caller consumes the scan


@dataclass
class OptimisticKv:
    """A KvTxn on etcd; see the module docstring. `marker`: this transaction's marker key."""

    snapshot: Snapshot
    root: bytes
    marker: bytes
    revision: int = 0  # the snapshot's; 0 until the first read
    reads: dict[bytes, int] = field(default_factory=dict)
    values: dict[bytes, bytes | None] = field(default_factory=dict)  # what the snapshot holds, as read
    scans: list[_Scan] = field(default_factory=list)
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def key(self, table: str, key: bytes) -> bytes:
        return self.root + table.encode("ascii") + b"/" + key

    def table_end(self, table: str) -> bytes:
        end = prefix_end(self.root + table.encode("ascii") + b"/")
        assert end is not None
        return end

    # -- reads ------------------------------------------------------------------------
    def _range(self, start: bytes, end: bytes | None, limit: int) -> tuple[list[tuple[bytes, bytes, int]], bool]:
        rows, more, revision = self.snapshot.range(start, end, self.revision, limit)
        if not self.revision:
            self.revision = revision
        return rows, more

    def get(self, table: str, key: bytes) -> bytes | None:
        full = self.key(table, key)
        if full in self.writes:
            return self.writes[full]
        if full in self.values:  # one snapshot: a key read once reads the same again
            return self.values[full]
        rows, _ = self._range(full, None, 1)
        value, mod = (rows[0][1], rows[0][2]) if rows else (None, 0)
        self.reads.setdefault(full, mod)
        self.values[full] = value
        return value

    def prefetch(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """Read these keys (as `get` would) in one round trip, so the gets that follow
        cost none: a path walk knows a directory's inode and the next entry's key at once."""
        wanted = [full for full in dict.fromkeys(self.key(t, k) for t, k in keys)
                  if full not in self.writes and full not in self.values]
        if len(wanted) < 2:
            return  # one key costs the same round trip when it is read
        found, revision = self.snapshot.get_many(wanted, self.revision)
        if not self.revision:
            self.revision = revision
        for full, (value, mod) in zip(wanted, found, strict=True):
            self.reads.setdefault(full, mod)
            self.values[full] = value

    def scan(self, table: str, start: bytes = b"", end: bytes | None = None, *,
             limit: int = 0) -> Iterator[tuple[bytes, bytes]]:
        prefix = self.key(table, b"")
        full_start = prefix + start
        full_end = prefix + end if end is not None else self.table_end(table)
        seen = _Scan(full_start, full_start)
        self.scans.append(seen)
        strip = len(prefix)
        for count, (key, value) in enumerate(self._merged(full_start, full_end), 1):
            seen.end = key + b"\x00"  # the decision so far depended on keys up to here
            yield key[strip:], value
            if count == limit:
                return
        seen.end = full_end

    def _merged(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The stored keys in [start, end) with this transaction's writes laid over them."""
        mine = sorted((k, v) for k, v in self.writes.items() if start <= k < end)
        at = 0
        cursor = start
        while True:
            rows, more = self._range(cursor, end, SCAN_PAGE)
            for key, stored, mod in rows:
                self.reads.setdefault(key, mod)
                self.values.setdefault(key, stored)
                current: bytes | None = stored
                while at < len(mine) and mine[at][0] <= key:
                    written, value = mine[at]
                    at += 1
                    if written == key:
                        current = value  # None: deleted by this transaction
                    elif value is not None:
                        yield written, value
                if current is not None:
                    yield key, current
            if not more or not rows:
                break
            cursor = rows[-1][0] + b"\x00"
        for written, value in mine[at:]:
            if value is not None:
                yield written, value

    # -- writes -----------------------------------------------------------------------
    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.writes[self.key(table, key)] = bytes(value)

    def delete(self, table: str, key: bytes) -> bool:
        existed = self.get(table, key) is not None
        self.writes[self.key(table, key)] = None
        return existed

    # -- counters ---------------------------------------------------------------------
    def add(self, table: str, key: bytes, delta: int) -> None:
        if delta:
            base = self.key(table, key)
            self.writes[counter_delta_key(base, self.marker, next(self._seq))] = encode_counter(delta)

    def total(self, table: str, key: bytes) -> int:
        """The base (deltas folded into it by housekeeping) plus the deltas after it."""
        return sum(decode_counter(v) for k, v in self.scan(table, key, key + b"\x01")
                   if k == key or k.startswith(key + DELTA))

    # -- commit -----------------------------------------------------------------------
    def commit_plan(self, max_ops: int) -> CommitPlan | None:
        """The Txn that commits this transaction (None: it wrote nothing); FailedPrecondition
        when it would exceed etcd's operations per Txn (`max_ops`, etcd's --max-txn-ops)."""
        if not self.writes:
            return None
        compares = [Compare(self.marker, "version", "equal", 0)]
        compares += [Compare(key, "mod", "equal", mod) for key, mod in self.reads.items()]
        compares += [Compare(s.start, "mod", "less", self.revision + 1, s.end)
                     for s in self.scans if s.end > s.start]
        ops: list[Op] = [Put(k, v) if v is not None else Delete(k) for k, v in self.writes.items()]
        ops.append(Put(self.marker, COMMITTED))
        if len(compares) > max_ops or len(ops) > max_ops:
            raise FailedPrecondition(
                f"this operation reads {len(self.reads)} keys, scans {len(self.scans)} ranges and writes "
                f"{len(self.writes)} keys: more than the {max_ops} operations etcd allows in one transaction "
                "(etcd's --max-txn-ops); do it in smaller steps (for example remove a large directory's "
                "contents before the directory)")
        return CommitPlan(compares, ops, self.marker)
