"""Write sessions: Open, Close and Sync.

A writer opens a file for write (a session record), writes chunks straight to
storage, and reports the file's length as it knows it on Sync and Close; the
metaserver never sees the bytes. Reports only grow the stored length (max of stored
and reported), so concurrent writers cannot shrink each other's data; only truncate
shrinks a file.

A truncate bumps the inode's `truncate_version`, and every report carries the version
its length is based on (3FS's VersionedLength). `judge_report` is the rule:

    reported version   reported length      outcome
    == stored          any                  GROW: length = max(stored, reported)
    <  stored          <= stored length     KEEP: nothing to grow (mtime still moves)
    <  stored          >  stored length     STALE: refused; nothing is applied
    >  stored          any                  FailedPrecondition (no such version yet)

A stale report that would grow the file is refused because its length may be the one
the writer saw before the truncate, and taking the max would undo the truncate. The
reply says `stale` and carries the current inode; a stale Close leaves the session
open. The writer then asks storage what survived (QueryLastChunk on each chain, as
3FS does when a length hint is stale), caps that at the end of its own writes, and
reports again at the current version, so a write past the new end still extends the
file, with zeros in the hole.

A Close for an unknown session (a retry after the first Close succeeded, or a session
lost with its inode's last link) still applies the length when the inode exists, under
the same rule, so retrying a Close is harmless.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from emberfs.common.errors import FailedPrecondition, InvalidArgument
from emberfs.proto import meta_pb2

from ..txn import NEXT_SESSION, USED_BYTES, MetaTxn
from .perm import R, W, Caller, check
from .resolve import lookup
from .truncate import MAX_FILE_LENGTH, apply_truncate, check_file

__all__ = ["Report", "close", "judge_report", "open_file", "open_session", "sync"]


class Report(enum.Enum):
    """What a writer's length report may do to the stored length (`judge_report`)."""

    GROW = "grow"
    """The report is based on the current truncate version: max(stored, reported)."""
    KEEP = "keep"
    """Stale, but not past the stored length: there is nothing to grow."""
    STALE = "stale"
    """Stale and past the stored length: refused; the writer recovers from storage."""


def judge_report(stored_length: int, stored_version: int, reported_length: int, reported_version: int) -> Report:
    """The rule of the module docstring's table, over plain values."""
    if reported_version > stored_version:
        raise FailedPrecondition(
            f"the report is based on truncate version {reported_version}, "
            f"but the file is at version {stored_version}"
        )
    if reported_version == stored_version:
        return Report.GROW
    return Report.KEEP if reported_length <= stored_length else Report.STALE


def open_session(tx: MetaTxn, inode: meta_pb2.Inode, client_id: str) -> int:
    session_id = tx.next_id(NEXT_SESSION)
    tx.put_session(inode.inode_id, session_id, client_id)
    return session_id


def open_file(
    tx: MetaTxn, caller: Caller, parts: Sequence[str], *, write: bool, truncate: bool, client_id: str = ""
) -> meta_pb2.OpenResponse:
    inode = lookup(tx, caller, parts, follow=True)
    check_file(inode)
    check(caller, inode, W if (write or truncate) else R, "open")
    old_length = apply_truncate(tx, inode, 0) if truncate else inode.length
    session_id = open_session(tx, inode, client_id) if write else 0
    return meta_pb2.OpenResponse(inode=inode, session_id=session_id, old_length=old_length)


def _report(
    tx: MetaTxn,
    caller: Caller,
    session_id: int,
    inode_id: int,
    length: int,
    wrote: bool,
    truncate_version: int,
) -> tuple[meta_pb2.Inode, bool, bool]:
    """Apply a writer's length report; returns the inode, whether the session is known
    and whether the report was refused as stale."""
    if not 0 <= length <= MAX_FILE_LENGTH:
        raise InvalidArgument(f"length {length} is outside 0..{MAX_FILE_LENGTH}")
    inode = tx.inode(inode_id)
    check_file(inode)
    known = session_id != 0 and tx.has_session(inode_id, session_id)
    if not known:
        check(caller, inode, W, "write report")  # the session proved this at open time
    if not wrote:
        return inode, known, False
    verdict = judge_report(inode.length, inode.truncate_version, length, truncate_version)
    if verdict is Report.STALE:
        return inode, known, True
    if verdict is Report.GROW and length > inode.length:
        tx.add_counter(USED_BYTES, length - inode.length)
        inode.length = length
    inode.mtime_ns = inode.ctime_ns = tx.now_ns
    tx.put_inode(inode)
    return inode, known, False


def close(
    tx: MetaTxn,
    caller: Caller,
    session_id: int,
    inode_id: int,
    *,
    length: int,
    wrote: bool,
    truncate_version: int = 0,
) -> meta_pb2.CloseResponse:
    """End a write session with its last report. A stale report keeps the session open:
    the writer reports again once it has recovered its length."""
    inode, known, stale = _report(tx, caller, session_id, inode_id, length, wrote, truncate_version)
    if known and not stale:
        tx.delete_session(inode_id, session_id)
    return meta_pb2.CloseResponse(inode=inode, stale=stale)


def sync(
    tx: MetaTxn,
    caller: Caller,
    session_id: int,
    inode_id: int,
    *,
    length: int,
    wrote: bool,
    truncate_version: int = 0,
) -> meta_pb2.SyncResponse:
    inode, _, stale = _report(tx, caller, session_id, inode_id, length, wrote, truncate_version)
    return meta_pb2.SyncResponse(inode=inode, stale=stale)
