"""Write sessions: Open, Close and Sync.

A writer opens a file for write (a session record), writes chunks straight to
storage, and reports the end of what it wrote on Sync and Close; the metaserver
never sees the bytes. The stored length only grows from reports (max of stored and
reported) so concurrent writers cannot shrink each other's data; only truncate
shrinks a file. A Close for an unknown session (a retry after the first Close
succeeded, or a session lost with its inode's last link) still applies the length
when the inode exists, so retrying a Close is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import InvalidArgument
from emberfs.proto import meta_pb2

from ..txn import NEXT_SESSION, USED_BYTES, MetaTxn
from .perm import R, W, Caller, check
from .resolve import lookup
from .truncate import MAX_FILE_LENGTH, apply_truncate, check_file

__all__ = ["close", "open_file", "open_session", "sync"]


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
    if truncate:
        apply_truncate(tx, inode, 0)
    session_id = open_session(tx, inode, client_id) if write else 0
    return meta_pb2.OpenResponse(inode=inode, session_id=session_id)


def _report(
    tx: MetaTxn, caller: Caller, session_id: int, inode_id: int, length: int, wrote: bool
) -> tuple[meta_pb2.Inode, bool]:
    """Apply a writer's length report; returns the inode and whether the session is known."""
    if not 0 <= length <= MAX_FILE_LENGTH:
        raise InvalidArgument(f"length {length} is outside 0..{MAX_FILE_LENGTH}")
    inode = tx.inode(inode_id)
    check_file(inode)
    known = session_id != 0 and tx.has_session(inode_id, session_id)
    if not known:
        check(caller, inode, W, "write report")  # the session proved this at open time
    if wrote:
        if length > inode.length:
            tx.add_counter(USED_BYTES, length - inode.length)
            inode.length = length
        inode.mtime_ns = inode.ctime_ns = tx.now_ns
        tx.put_inode(inode)
    return inode, known


def close(
    tx: MetaTxn, caller: Caller, session_id: int, inode_id: int, *, length: int, wrote: bool
) -> meta_pb2.CloseResponse:
    inode, known = _report(tx, caller, session_id, inode_id, length, wrote)
    if known:
        tx.delete_session(inode_id, session_id)
    return meta_pb2.CloseResponse(inode=inode)


def sync(
    tx: MetaTxn, caller: Caller, session_id: int, inode_id: int, *, length: int, wrote: bool
) -> meta_pb2.SyncResponse:
    inode, _ = _report(tx, caller, session_id, inode_id, length, wrote)
    return meta_pb2.SyncResponse(inode=inode)
