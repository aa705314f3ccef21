"""Pure resync planning: which resync jobs a node runs (`sync_jobs`) and, for one
job, which chunks it sends or removes (`sync_diff`).

The resync diff: which chunks a predecessor sends to, or removes from, its syncing
successor. Pure (3FS: the storage `SyncWorker` compares chunk metadata the same way).

Input: the predecessor's committed chunks and tombstones and the successor's (its
SyncDump), each as `SyncMeta`. Output, in chunk order:

    predecessor has     successor has                       op
    chunk or tombstone  nothing                             SEND
    chunk or tombstone  another version, digest or kind     SEND
    chunk or tombstone  the same                            nothing
    nothing             a chunk or tombstone                REMOVE

SEND carries the whole committed chunk as a REPLACE at the predecessor's version
(a tombstone as a REMOVE at its version); REMOVE drops the successor's record (a
REMOVE at replication.PURGE_VERSION). The worker re-reads the predecessor's chunk
under its chunk lock before acting (a live write may have changed it since the
listing), so this diff only chooses which chunks to look at again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from emberfs.common.chainstate import Chain, PublicState

from .records import ChunkId

__all__ = ["SyncMeta", "SyncOp", "SyncPlan", "sync_diff", "sync_jobs"]


@dataclass(frozen=True, slots=True)
class SyncMeta:
    """One committed chunk as a resync compares it."""

    chunk_id: ChunkId
    commit_version: int
    length: int
    crc32c: int
    exists: bool = True
    """False: a tombstone (a REMOVE committed at commit_version)."""


class SyncOp(Enum):
    SEND = "send"
    """Send the predecessor's whole committed chunk (a REPLACE at its version), or its
    tombstone (a REMOVE at its version)."""
    REMOVE = "remove"
    """The predecessor has no record of the chunk: drop the successor's."""


@dataclass(frozen=True, slots=True)
class SyncPlan:
    ops: tuple[tuple[ChunkId, SyncOp], ...]
    unchanged: int
    """Chunks both sides already hold identically."""

    @property
    def sends(self) -> int:
        return sum(1 for _, op in self.ops if op == SyncOp.SEND)

    @property
    def removes(self) -> int:
        return sum(1 for _, op in self.ops if op == SyncOp.REMOVE)


def sync_diff(local: Iterable[SyncMeta], remote: Iterable[SyncMeta]) -> SyncPlan:
    """The ops that make `remote` (the syncing successor) equal `local` (see table)."""
    theirs = {m.chunk_id: m for m in remote}
    ops: dict[ChunkId, SyncOp] = {}
    unchanged = 0
    for mine in local:
        other = theirs.pop(mine.chunk_id, None)
        if other == mine:
            unchanged += 1
        else:
            ops[mine.chunk_id] = SyncOp.SEND
    for chunk_id in theirs:
        ops[chunk_id] = SyncOp.REMOVE
    return SyncPlan(tuple(sorted(ops.items())), unchanged)


def sync_jobs(chains: Iterable[Chain], local_targets: Iterable[int],
              failed: Iterable[int] = ()) -> dict[tuple[int, int], tuple[int, int]]:
    """The resyncs this node must run: {(chain_id, syncing target): (local source
    target, chain_version)}. A local target that is SERVING and healthy syncs its
    successor on the write path when that successor is SYNCING (predecessor-driven,
    as in 3FS; chainstate allows one SYNCING target per chain, placed right after the
    serving tail, so exactly one node runs each job)."""
    local = frozenset(local_targets) - frozenset(failed)
    jobs: dict[tuple[int, int], tuple[int, int]] = {}
    for chain in chains:
        for source in chain.serving:
            if source not in local:
                continue
            successor = chain.successor(source)
            if successor is not None and chain.state_of(successor) == PublicState.SYNCING:
                jobs[(chain.chain_id, successor)] = (source, chain.chain_version)
    return jobs
