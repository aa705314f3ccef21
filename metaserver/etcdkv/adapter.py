"""The etcd engine's view of etcd (store.Etcd) on the real client (client.EtcdClient).

The engine speaks in its plan records (optimistic.Compare with "mod"/"version" and
"equal"/"less"; Put, Delete, DeleteRange) and wants ranges as (key, value, mod_revision)
rows; this module translates both ways and nothing else. Two rules live here:

- reads at a given revision (every read of a transaction after its first) are
  serializable: the member answers from its own store without a raft round trip, which
  is exact for a revision it has applied; a member that has not ("future revision",
  after a failover) is asked again linearizably, which waits until it has;
- the revision a range read at is the one asked for, or the answer's header revision for
  "latest" (etcd's header always carries the store's newest revision, even for a read
  at an older one);
- errors pass through unchanged: OutcomeUnknown the engine resolves through its commit
  marker, RevisionCompacted it treats as a conflict, Unavailable surely did not apply.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import FailedPrecondition

from .client import EtcdClient
from .model import Compare, CompareOp, CompareTarget, Op
from .optimistic import Compare as PlanCompare
from .optimistic import Delete, DeleteRange, Put
from .optimistic import Op as PlanOp

__all__ = ["ClientEtcd"]

_TARGETS = {"mod": CompareTarget.MOD, "version": CompareTarget.VERSION}
_OPS = {"equal": CompareOp.EQUAL, "less": CompareOp.LESS}


def to_compare(compare: PlanCompare) -> Compare:
    return Compare(compare.key, _TARGETS[compare.target], _OPS[compare.op], compare.value, compare.range_end)


def to_op(op: PlanOp) -> Op:
    if isinstance(op, Put):
        return Op.put(op.key, op.value)
    if isinstance(op, Delete):
        return Op.delete(op.key)
    if isinstance(op, DeleteRange):
        return Op.delete_range(op.start, op.end)
    raise TypeError(f"not an etcd engine operation: {op!r}")


class ClientEtcd:
    """store.Etcd over an EtcdClient (which it owns: close() closes it)."""

    def __init__(self, client: EtcdClient, *, serializable_snapshots: bool = True) -> None:
        self.client = client
        self.serializable_snapshots = serializable_snapshots

    def range(self, start: bytes, end: bytes | None, revision: int,
              limit: int) -> tuple[list[tuple[bytes, bytes, int]], bool, int]:
        found = None
        if revision > 0 and self.serializable_snapshots:
            try:
                found = self.client.range(start, end or b"", revision=revision, limit=limit, serializable=True)
            except FailedPrecondition as exc:
                if "future revision" not in exc.message:
                    raise  # compacted: the linearizable read would say the same
                # The client moved to a member that has not applied the snapshot yet.
        if found is None:
            found = self.client.range(start, end or b"", revision=revision, limit=limit)
        rows = [(kv.key, kv.value, kv.mod_revision) for kv in found.kvs]
        return rows, found.more, revision or found.revision

    def get_many(self, keys: Sequence[bytes], revision: int) -> tuple[list[tuple[bytes | None, int]], int]:
        """(value or None, mod_revision) of each key at `revision` (0: the newest), all in
        one read-only Txn, and the revision read at. At a given revision the Txn is
        serializable (answered by the member itself), as `range` reads are."""
        result = None
        if revision > 0 and self.serializable_snapshots:
            try:
                result = self.client.txn([], [Op.get(k, revision=revision, serializable=True) for k in keys])
            except FailedPrecondition as exc:
                if "future revision" not in exc.message:
                    raise
        if result is None:
            result = self.client.txn([], [Op.get(k, revision=revision) for k in keys])
        found: list[tuple[bytes | None, int]] = []
        for response in result.responses:
            kv = response.kvs[0] if response.kvs else None
            found.append((kv.value, kv.mod_revision) if kv is not None else (None, 0))
        return found, revision or result.revision

    def commit(self, compares: Sequence[PlanCompare], ops: Sequence[PlanOp]) -> bool:
        return self.client.txn([to_compare(c) for c in compares], [to_op(op) for op in ops]).succeeded

    def close(self) -> None:
        self.client.close()
