"""Which chunk rights an open grants, and renewing them for an open inode.

A read open grants read; a write open grants write, and read too when the mode lets
the caller read (so "r+b" and a writer's own reads work, while a 0200 file opened for
write stays unreadable). Renewal checks the inode's mode again, but not the path to
it: the holder opened it already, as an open file descriptor survives a chmod of its
directory.
"""

from __future__ import annotations

from emberfs.common.capability import RIGHT_READ, RIGHT_WRITE
from emberfs.proto import meta_pb2

from ..txn import MetaTxn
from .perm import R, W, Caller, check, may
from .truncate import check_file

__all__ = ["open_rights", "renew"]


def open_rights(caller: Caller, inode: meta_pb2.Inode, *, write: bool) -> int:
    """The rights of an open whose permission check (R, or W for write) passed."""
    if not write:
        return RIGHT_READ
    return RIGHT_WRITE | (RIGHT_READ if may(caller, inode, R) else 0)


def renew(tx: MetaTxn, caller: Caller, inode_id: int, *, write: bool) -> tuple[meta_pb2.Inode, int]:
    """(inode, rights) for a fresh capability; PermissionDenied when the mode no longer allows."""
    inode = tx.inode(inode_id)
    check_file(inode)
    check(caller, inode, W if write else R, "capability")
    return inode, open_rights(caller, inode, write=write)
