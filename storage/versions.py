"""The CRAQ chunk-version rules, as pure functions over plain integers.

Every chunk replica keeps a committed version `c` (0: no committed data) and, while
a write is in flight, one pending version `p` (None when clean). CRAQ (Terrace &
Freedman, "Object Storage on CRAQ", USENIX ATC 2009) and 3FS (`ChunkReplica::update`)
order the writes of one chunk by version number:

Head (`head_plan`). A client write enters at the head, which holds the chunk lock and
assigns `u = c + 1`. If the head still holds a pending version from an earlier
attempt whose forward failed, a successor may already have committed that version,
so the head must not reuse its number for different bytes: it first re-drives the
pending version (forwards the pending whole chunk as a REPLACE at version `p`, then
commits it) and only then assigns `p + 1` to the new write.

Replica (`decide_update`), for an update with version `u` arriving from the
predecessor; first matching row wins:

    condition                                  action              3FS name
    sync (resync or forward to a SYNCING       APPLY               isSyncing
      target, whole-chunk REPLACE)
    REMOVE of a chunk this replica lacks       ALREADY_COMMITTED   (remove is idempotent)
    u <= c                                     ALREADY_COMMITTED   kChunkCommittedUpdate
    u == p                                     APPLY (a retry of the in-flight update:
                                               rewrite the pending version, idempotent)
    u == c + 1                                 APPLY               the normal case
    u > c + 1                                  MISSING             kChunkMissingUpdate

APPLY: store `u` as the pending version, forward, commit when the ack returns.
ALREADY_COMMITTED: answer success with the current committed state and apply nothing
(a retry whose first attempt committed here but whose ack was lost). MISSING: this
replica lacks earlier updates; refuse, it needs a resync (the chain manager moves it
through SYNCING).

Reads (`read_plan`, `resolve_dirty_read`). A clean chunk (no pending version) is
served from the local committed version; so is any chunk at the tail, whose
committed version is by definition the chain's. A dirty chunk on another replica
asks the tail for its committed version `t` (CRAQ's version query): `t == c` serve
the local committed bytes, `t == p` the pending version has committed at the tail,
so serve the pending bytes; anything else means the chunk moved on meanwhile: retry.
3FS answers "not committed" to dirty reads instead; CRAQ's resolution saves the
client a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from emberfs.common.errors import StaleChainVersion

__all__ = [
    "DirtyRead",
    "HeadPlan",
    "ReadPlan",
    "UpdateAction",
    "check_chain_version",
    "decide_update",
    "head_plan",
    "read_plan",
    "resolve_dirty_read",
]


class UpdateAction(Enum):
    """What a replica does with an incoming update."""

    APPLY = "apply"
    """Store the update as the pending version (a first attempt or a retry)."""
    ALREADY_COMMITTED = "already_committed"
    """Committed here before: reply success with the current state, apply nothing."""
    MISSING = "missing"
    """This replica missed earlier updates: refuse; it must be resynced."""


@dataclass(frozen=True, slots=True)
class HeadPlan:
    """What the head does before forwarding a new client write."""

    update_version: int
    """The version the new client write gets."""
    redrive_pending: int | None
    """A pending version left by a failed attempt, to finish first; None if clean."""


class ReadPlan(Enum):
    SERVE_COMMITTED = "serve_committed"
    """Serve the local committed version."""
    ASK_TAIL = "ask_tail"
    """Dirty and not the tail: ask the tail which version is committed."""


class DirtyRead(Enum):
    SERVE_COMMITTED = "serve_committed"
    """The tail's committed version is ours: serve our committed bytes."""
    SERVE_PENDING = "serve_pending"
    """The tail committed our pending version: serve the pending bytes."""
    RETRY = "retry"
    """The chunk changed meanwhile: read again."""


def _check_versions(commit_version: int, pending_version: int | None) -> None:
    # A pending version is normally c + 1, but a resync REPLACE may set any version
    # (even one below c, when this replica diverged), so only signs are checked.
    if commit_version < 0 or (pending_version is not None and pending_version < 1):
        raise ValueError(f"bad versions: committed {commit_version}, pending {pending_version}")


def head_plan(commit_version: int, pending_version: int | None) -> HeadPlan:
    """The head's version assignment for a new client write (see module docstring)."""
    _check_versions(commit_version, pending_version)
    if pending_version is None:
        return HeadPlan(commit_version + 1, None)
    return HeadPlan(max(commit_version, pending_version) + 1, pending_version)


def decide_update(
    commit_version: int,
    pending_version: int | None,
    update_version: int,
    *,
    exists: bool = True,
    remove: bool = False,
    sync: bool = False,
) -> UpdateAction:
    """The replica rule for an update with `update_version` (table in the docstring).

    `exists` is False when the replica has no such chunk (neither committed nor
    pending); `remove` marks a REMOVE update; `sync` a whole-chunk REPLACE from a
    resync or to a SYNCING target, which overrides whatever the replica holds.
    """
    _check_versions(commit_version, pending_version)
    if update_version < 1:
        raise ValueError(f"update versions start at 1, not {update_version}")
    if sync:
        return UpdateAction.APPLY
    if remove and not exists:
        # A retried REMOVE whose first attempt already removed the chunk here.
        return UpdateAction.ALREADY_COMMITTED
    if update_version <= commit_version:
        return UpdateAction.ALREADY_COMMITTED
    if update_version == pending_version or update_version == commit_version + 1:
        return UpdateAction.APPLY
    return UpdateAction.MISSING


def read_plan(pending_version: int | None, *, is_tail: bool) -> ReadPlan:
    """How a SERVING replica answers a read of a chunk (CRAQ's clean/dirty rule)."""
    if pending_version is None or is_tail:
        return ReadPlan.SERVE_COMMITTED
    return ReadPlan.ASK_TAIL


def resolve_dirty_read(
    commit_version: int, pending_version: int | None, tail_commit_version: int
) -> DirtyRead:
    """Which local version to serve once the tail named its committed version."""
    if tail_commit_version == commit_version:
        return DirtyRead.SERVE_COMMITTED
    if pending_version is not None and tail_commit_version == pending_version:
        return DirtyRead.SERVE_PENDING
    return DirtyRead.RETRY


def check_chain_version(request_version: int, current_version: int) -> None:
    """Refuse a request made against another chain version than the server holds.

    Older: the caller routes by a stale chain. Newer: this server is behind; either
    way the side that is behind refreshes its routing and retries.
    """
    if request_version != current_version:
        raise StaleChainVersion(
            f"chain version {request_version} does not match the current {current_version}"
        )
