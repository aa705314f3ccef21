"""The two rule sets the simulated nodes run: `CurrentRules` delegates every version
decision to storage/replication.py (the code under test); `LegacyRules` re-implements
the pre-fix behaviour (storage/versions.py, craq.py, chunkstore.py, recovery.py,
housekeeping.py and resync.py as of commit ac1d8b5) so the simulator can show it
finds the defects issue 15 names.

Both work on `replication.Replica` values (legacy keeps no tombstone: a committed
REMOVE leaves `Replica()`, which the disk model stores as "no record"). The node
model (handlers.py) is the same for both; the flags below switch the behaviours
that live in the operator rather than in a pure rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import zlib
from dataclasses import dataclass, replace

from emberfs.storage import replication as rep
from emberfs.storage.replication import ABSENT, Digest, Replica

__all__ = ["ABSENT", "CurrentRules", "Digest", "LegacyRules", "Replica", "Rules", "Update", "apply_update",
           "rules_named"]

WRITE, REPLACE, REMOVE = "write", "replace", "remove"


@dataclass(frozen=True, slots=True)
class Update:
    """What travels down the chain. WRITE: a partial write (`data` is the write's id;
    the result depends on the bytes it lands on); REPLACE: a whole chunk (`data` is
    its Digest); REMOVE: no bytes."""

    kind: str
    data: object = None
    key: bytes = b""
    """The client request behind it (b"": none, e.g. a resync send)."""


def apply_update(base: Digest, update: Update) -> Digest:
    """The bytes an update leaves, as a digest: a WRITE mixes its id into the bytes
    below it, so the same write on different bases gives different digests."""
    if update.kind == REMOVE:
        return ABSENT
    if update.kind == REPLACE:
        assert isinstance(update.data, Digest)
        return update.data
    below = base.crc32c if base.exists else 0
    crc = zlib.crc32(f"{below}:{update.data}".encode())
    return Digest(True, max(base.length, 4096), crc)


def whole(digest: Digest, key: bytes = b"") -> Update:
    """The whole-chunk update that carries `digest` (REPLACE, or REMOVE for no bytes)."""
    return Update(REPLACE, digest, key) if digest.exists else Update(REMOVE, None, key)


class Rules(ABC):
    """The interface the node model uses (see CurrentRules for the meaning)."""

    name = "?"
    tombstones = True
    compare_acks = True
    restart_resyncs = True
    cancel_keeps_lock = True
    gc_locks = True
    remembers_requests = True
    replan_after_redrive = True
    sync_drops_pending = True
    takeover_forwards = True
    """craq.take_over: a SYNCING successor gets the taken-over version first (b4b33c6)."""
    resync_takes_over = True
    """resync.sync_once: the source takes over its pending versions before listing (b4b33c6)."""
    purge_version = rep.PURGE_VERSION

    # Every rule set answers each of these; an abstract method makes a missing one an
    # error when the rule set is built, not deep inside a schedule.
    @abstractmethod
    def head_plan(self, r: Replica, remove: bool) -> rep.HeadPlan: ...
    @abstractmethod
    def decide_update(self, r: Replica, u: int, *, remove: bool, sync: bool, gone: bool) -> str: ...
    @abstractmethod
    def may_prepare(self, r: Replica, u: int, sync: bool) -> bool: ...
    @abstractmethod
    def committed(self, r: Replica, u: int) -> Replica | None: ...
    @abstractmethod
    def check_ack(self, u: int, sent: Digest, ack_version: int, ack: Digest) -> bool: ...
    @abstractmethod
    def read_plan(self, r: Replica, is_tail: bool) -> str: ...
    @abstractmethod
    def resolve_dirty_read(self, r: Replica, tail_version: int) -> str: ...
    @abstractmethod
    def recovered(self, r: Replica, whole: bool) -> Replica: ...
    @abstractmethod
    def listed(self, r: Replica) -> bool: ...
    @abstractmethod
    def sync_version(self, r: Replica) -> int: ...


class CurrentRules(Rules):
    """storage/replication.py plus today's operator behaviours (issue 15 fixes,
    through commit b4b33c6)."""

    name = "current"

    def head_plan(self, r: Replica, remove: bool) -> rep.HeadPlan:
        return rep.head_plan(r, remove=remove)

    def decide_update(self, r: Replica, u: int, *, remove: bool, sync: bool, gone: bool) -> str:
        return rep.decide_update(r, u, sync=sync, gone=gone).value

    def may_prepare(self, r: Replica, u: int, sync: bool) -> bool:
        return rep.may_prepare(r, u, sync=sync)

    def committed(self, r: Replica, u: int) -> Replica | None:
        try:
            return rep.committed(r, u)
        except ValueError:
            return None

    def check_ack(self, u: int, sent: Digest, ack_version: int, ack: Digest) -> bool:
        return rep.check_ack(u, sent, ack_version, ack).ok

    def read_plan(self, r: Replica, is_tail: bool) -> str:
        return rep.read_plan(r, is_tail=is_tail).value

    def resolve_dirty_read(self, r: Replica, tail_version: int) -> str:
        return rep.resolve_dirty_read(r, tail_version).value

    def recovered(self, r: Replica, whole: bool) -> Replica:
        return rep.recovered(r, pending_whole=whole)

    def listed(self, r: Replica) -> bool:
        return r.commit_version > 0  # committed bytes and tombstones (resync.py)

    def sync_version(self, r: Replica) -> int:
        return r.commit_version  # PURGE_VERSION when there is no record


class LegacyRules(Rules):
    """The pre-fix behaviour (commit ac1d8b5), re-implemented from its sources."""

    name = "legacy"
    tombstones = False          # chunkstore.commit: a REMOVE drops the record (version back to 0)
    compare_acks = False        # craq: "already committed" is success, the ack is not compared
    restart_resyncs = False     # chainstate: SERVING + ONLINE stays SERVING after a quick restart
    cancel_keeps_lock = False   # craq: `async with lock` is left on cancellation; the I/O thread goes on
    gc_locks = False            # housekeeping.remove_chunks -> store.remove_inode, no chunk lock, no mark
    remembers_requests = False  # only the in-memory RecentReplies of one head
    replan_after_redrive = False  # craq._head_update takes u from the plan made before the re-drive
    sync_drops_pending = False  # syncrecv.sync_dump lists, nothing more
    takeover_forwards = False   # (no take-over at all: read_plan serves the committed version)
    resync_takes_over = False
    purge_version = 1           # resync._sync_chunk: version max(commit_version, 1)

    def head_plan(self, r: Replica, remove: bool) -> rep.HeadPlan:
        c, p = r.commit_version, r.pending_version
        if p is None:
            return rep.HeadPlan(c + 1, None)
        return rep.HeadPlan(max(c, p) + 1, p)

    def decide_update(self, r: Replica, u: int, *, remove: bool, sync: bool, gone: bool) -> str:
        if sync:
            return "apply"
        exists = r.committed.exists or r.pending_version is not None
        if remove and not exists:
            return "already_committed"
        if u <= r.commit_version:
            return "already_committed"
        if u == r.pending_version or u == r.commit_version + 1:
            return "apply"
        return "missing"

    def may_prepare(self, r: Replica, u: int, sync: bool) -> bool:
        return True  # chunkstore.prepare stores any version >= 1

    def committed(self, r: Replica, u: int) -> Replica | None:
        if r.pending_version == u:
            assert r.pending is not None
            return Replica(u, r.pending) if r.pending.exists else Replica()
        if r.committed.exists and r.commit_version >= u:
            return r
        return None

    def check_ack(self, u: int, sent: Digest, ack_version: int, ack: Digest) -> bool:
        return True

    def read_plan(self, r: Replica, is_tail: bool) -> str:
        return "serve_committed" if r.pending_version is None or is_tail else "ask_tail"

    def resolve_dirty_read(self, r: Replica, tail_version: int) -> str:
        if tail_version == r.commit_version:
            return "serve_committed"
        if r.pending_version is not None and tail_version == r.pending_version:
            return "serve_pending"
        return "retry"

    def recovered(self, r: Replica, whole: bool) -> Replica:
        return replace(r, pending_version=None, pending=None)  # recovery.py discards every pending version

    def listed(self, r: Replica) -> bool:
        return r.committed.exists

    def sync_version(self, r: Replica) -> int:
        return max(r.commit_version, 1)


class BeforeB4b33c6Rules(CurrentRules):
    """CurrentRules with the operator as it was before commit b4b33c6: a take-over
    commits locally even with a SYNCING successor (finding F1), and a resync source
    lists its chunks without taking over its pending versions (finding F2). Kept so
    the tests show the simulator finds both."""

    name = "current-before-b4b33c6"
    takeover_forwards = False
    resync_takes_over = False


RULES: dict[str, type[Rules]] = {"current": CurrentRules, "legacy": LegacyRules,
                                 "current-before-b4b33c6": BeforeB4b33c6Rules}


def rules_named(name: str) -> Rules:
    return RULES[name]()
