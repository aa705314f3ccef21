"""The per-chunk replication rules of EmberFS's CRAQ, in one pure module.

Every rule about *which* version of a chunk a replica stores, commits, serves or
refuses lives here, as functions over plain values. The operator (craq.py), the
chunk store (chunkstore.py), crash recovery (recovery.py), the resync (resync.py,
syncrecv.py) and the deterministic simulator in tests/ all call these functions;
none of them decides a version on its own. (Chain replication: van Renesse &
Schneider, OSDI 2004; CRAQ: Terrace & Freedman, USENIX ATC 2009; 3FS's
`ChunkReplica` and its P specs of the same protocol.)

State of one chunk on one target (`Replica`): a committed version `c` with the
`Digest` of its bytes (exists, length, CRC32C) and, while an update is in flight,
one pending version `p` with the digest it will have once committed.

Invariants these rules keep, checked by the simulator after every step:
- Versions only grow on a replica that serves: a REMOVE commits a *tombstone* (a
  record with version `c` and no bytes) instead of dropping the record, so the next
  write gets `c + 1`, never a number some replica already used for other bytes.
  Tombstones go when the file's chunks are garbage-collected (`remove_inode`).
  Only a resync (a SYNCING target adopting its predecessor's state) may move a
  version down, because that target serves nothing until the resync is done.
- Replicas that claim the same committed version hold the same bytes: every
  forward acknowledgement carries (version, digest) and the sender compares it with
  what it prepared (`check_ack`); "already committed" with other bytes is a
  divergence, reported as an error, never a success.
- A read never goes backwards: a dirty chunk off the tail asks the tail; at the
  tail a pending version outside a running update is one its former successor may
  already have committed and served, so the tail commits it before serving
  (`read_plan` TAKE_OVER; chain replication's "the new tail commits what it holds").

Head, for a client write (`head_plan`), holding the chunk lock:

    replica state                  plan
    pending p                      re-drive p first (forward it as a whole chunk,
                                   commit), then the write gets max(c, p) + 1
    REMOVE, clean, no bytes (no    nothing to remove: answer at once (NOOP); the
      record, or a tombstone)      replicas hold the same, having acked it
    otherwise                      the write gets c + 1

Replica, for an update with version u from its predecessor (`decide_update`),
first matching row wins:

    condition                            action              3FS name
    the file was deleted here (GC), and  GONE                (refused)
      the update is not a purge
    sync (resync, or a forward to a      APPLY               isSyncing
      SYNCING target: a whole chunk)
    u == c                               ALREADY_COMMITTED   kChunkCommittedUpdate
                                         (the sender compares digests)
    u < c                                AHEAD               (diverged: refused)
    u == p                               APPLY (a retry of the in-flight update)
    u == c + 1                           APPLY               the normal case
    u > c + 1                            MISSING             kChunkMissingUpdate

Store rules: `prepare` refuses a pending version at or below the committed one
(except with sync), so a late, orphaned prepare can never shadow a newer commit;
`commit` accepts only the pending version, and a retry of the version already
committed is a no-op.

Reads (`read_plan`, `resolve_dirty_read`):

    clean                             SERVE_COMMITTED
    dirty, this target is the tail    TAKE_OVER: under the chunk lock, commit the
                                      pending version if it is still there, serve
    dirty, not the tail               ASK_TAIL for its committed version t:
                                      t == c serve committed, t == p serve pending,
                                      else the chunk moved on: read again

Restart and resync:
- `recovered`: after a crash, a pending version whose file is whole (length and
  CRC32C match) is kept; a half-built one is dropped. A restarted target never
  serves before the manager has moved it through SYNCING (it registers a new
  incarnation; chainstate.py), except as the last serving replica of its chain
  (LASTSRV), which then takes over its pending versions as the tail.
- `sync_start`: a target that starts a resync drops its pending versions: what it
  must hold is exactly what its predecessor sends, and a stale pending version
  would otherwise be taken over when it becomes the tail.
- A sync update with version 0 (`PURGE_VERSION`) means the sender has no record of
  the chunk at all: the receiver drops its record too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

__all__ = [
    "ABSENT",
    "PURGE_VERSION",
    "AckVerdict",
    "Digest",
    "DirtyRead",
    "HeadPlan",
    "ReadPlan",
    "Replica",
    "UpdateAction",
    "check_ack",
    "committed",
    "decide_update",
    "head_plan",
    "may_prepare",
    "prepared",
    "read_plan",
    "recovered",
    "remembered",
    "resolve_dirty_read",
    "sync_start",
]

PURGE_VERSION = 0
"""A sync REMOVE at this version: the sender has no record; drop ours."""


@dataclass(frozen=True, slots=True)
class Digest:
    """What one version of a chunk holds: enough to tell two replicas' bytes apart."""

    exists: bool
    """False: no bytes (a hole never written, or a tombstone left by a REMOVE)."""
    length: int = 0
    crc32c: int = 0


ABSENT = Digest(False)


@dataclass(frozen=True, slots=True)
class Replica:
    """One chunk's replication state on one target."""

    commit_version: int = 0
    """0: nothing ever committed here (no record); a tombstone keeps its version."""
    committed: Digest = ABSENT
    pending_version: int | None = None
    pending: Digest | None = None
    """What `pending_version` holds once committed (None when clean)."""

    @property
    def clean(self) -> bool:
        return self.pending_version is None

    @property
    def has_record(self) -> bool:
        return self.commit_version > 0 or self.pending_version is not None


class UpdateAction(Enum):
    """What a replica does with an update from its predecessor."""

    APPLY = "apply"
    """Store it as the pending version, forward it, commit when the ack returns."""
    ALREADY_COMMITTED = "already_committed"
    """Committed here before (an ack was lost): answer with the committed digest,
    which the sender compares with what it sent."""
    AHEAD = "ahead"
    """This replica holds a newer version than the update: the chain diverged; refuse."""
    MISSING = "missing"
    """This replica missed earlier updates: refuse; the manager resyncs it."""
    GONE = "gone"
    """The file was deleted (its chunks collected) here: refuse; nothing is re-created."""


@dataclass(frozen=True, slots=True)
class HeadPlan:
    """What the head does with a new client write."""

    update_version: int
    """The version the write gets (meaningless for a NOOP)."""
    redrive_pending: int | None
    """A pending version left by an interrupted update, to finish first; None if clean."""
    noop: bool = False
    """A REMOVE of a chunk that holds no bytes (no record, or a tombstone): nothing to do."""


class ReadPlan(Enum):
    SERVE_COMMITTED = "serve_committed"
    ASK_TAIL = "ask_tail"
    TAKE_OVER = "take_over"
    """The tail holds a pending version: commit it (under the chunk lock), then serve."""


class DirtyRead(Enum):
    SERVE_COMMITTED = "serve_committed"
    SERVE_PENDING = "serve_pending"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class AckVerdict:
    ok: bool
    why: str = ""


def _check(r: Replica) -> None:
    if r.commit_version < 0 or (r.pending_version is not None and r.pending_version < 1):
        raise ValueError(f"bad versions: committed {r.commit_version}, pending {r.pending_version}")
    if (r.pending_version is None) != (r.pending is None):
        raise ValueError("a pending version needs its digest, and only then")


def head_plan(r: Replica, *, remove: bool = False) -> HeadPlan:
    """The head's plan for a new client write (table in the module docstring)."""
    _check(r)
    if r.pending_version is not None:
        return HeadPlan(max(r.commit_version, r.pending_version) + 1, r.pending_version)
    if remove and not r.committed.exists:
        return HeadPlan(0, None, noop=True)
    return HeadPlan(r.commit_version + 1, None)


def decide_update(r: Replica, update_version: int, *, sync: bool = False, gone: bool = False) -> UpdateAction:
    """The replica rule for an update at `update_version` (table in the module docstring).

    `sync`: a whole-chunk REPLACE/REMOVE to a SYNCING target (version 0 only then:
    a purge). `gone`: this target collected the file's chunks."""
    _check(r)
    if gone and not (sync and update_version == PURGE_VERSION):
        return UpdateAction.GONE
    if sync:
        return UpdateAction.APPLY
    if update_version < 1:
        raise ValueError(f"update versions start at 1, not {update_version}")
    c = r.commit_version
    if update_version == c:
        return UpdateAction.ALREADY_COMMITTED
    if update_version < c:
        return UpdateAction.AHEAD
    if update_version == r.pending_version or update_version == c + 1:
        return UpdateAction.APPLY
    return UpdateAction.MISSING


def may_prepare(r: Replica, update_version: int, *, sync: bool = False) -> bool:
    """Versions only grow: a pending version must be above the committed one
    (a resync may set any version on its SYNCING target)."""
    return sync or update_version > r.commit_version


def prepared(r: Replica, update_version: int, digest: Digest, *, sync: bool = False) -> Replica:
    """The state once `update_version` is stored as the pending version."""
    _check(r)
    if not may_prepare(r, update_version, sync=sync):
        raise ValueError(f"pending version {update_version} is not above the committed {r.commit_version}")
    return replace(r, pending_version=update_version, pending=digest)


def committed(r: Replica, update_version: int) -> Replica:
    """The state once pending `update_version` commits. Committing the version that is
    already committed (a retry) changes nothing; anything else is refused."""
    _check(r)
    if r.pending_version == update_version:
        assert r.pending is not None
        return Replica(update_version, r.pending)
    if r.commit_version == update_version:
        return r
    raise ValueError(f"no pending version {update_version} (committed {r.commit_version}, "
                     f"pending {r.pending_version})")


def check_ack(sent_version: int, sent: Digest, ack_version: int, ack: Digest) -> AckVerdict:
    """Compare a successor's acknowledgement with what was sent to it."""
    if ack_version != sent_version:
        return AckVerdict(False, f"the successor acknowledged version {ack_version}, not {sent_version}")
    if ack != sent:
        return AckVerdict(False, f"version {sent_version} holds {_show(ack)} on the successor but "
                                 f"{_show(sent)} here: the replicas diverged")
    return AckVerdict(True)


def _show(d: Digest) -> str:
    return f"{d.length} bytes, CRC32C {d.crc32c:#010x}" if d.exists else "no bytes"


def read_plan(r: Replica, *, is_tail: bool) -> ReadPlan:
    """How a SERVING replica answers a read (CRAQ's clean/dirty rule, plus takeover)."""
    if r.pending_version is None:
        return ReadPlan.SERVE_COMMITTED
    return ReadPlan.TAKE_OVER if is_tail else ReadPlan.ASK_TAIL


def resolve_dirty_read(r: Replica, tail_commit_version: int) -> DirtyRead:
    """Which local version to serve once the tail named its committed version."""
    if tail_commit_version == r.commit_version:
        return DirtyRead.SERVE_COMMITTED
    if r.pending_version is not None and tail_commit_version == r.pending_version:
        return DirtyRead.SERVE_PENDING
    return DirtyRead.RETRY


def recovered(r: Replica, *, pending_whole: bool) -> Replica:
    """The state after a crash: a whole pending version is kept (its predecessor or a
    former tail may have committed it); a half-built one is dropped."""
    if r.pending_version is None or pending_whole:
        return r
    return replace(r, pending_version=None, pending=None)


def sync_start(r: Replica) -> Replica:
    """The state of a SYNCING target's chunk once its resync starts: no pending version."""
    return replace(r, pending_version=None, pending=None)


def remembered(history: tuple[tuple[bytes, int], ...], request: bytes, version: int,
               limit: int) -> tuple[tuple[bytes, int], ...]:
    """A chunk's recent (request key, version) history with one more entry, newest
    last, at most `limit` long: a retried client request that already committed is
    recognised by any replica that later becomes head (see craq.py)."""
    kept = tuple(entry for entry in history if entry[0] != request)
    return (kept + ((request, version),))[-limit:]
