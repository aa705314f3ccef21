"""Truncate: set a file's exact length.

Every truncate bumps `truncate_version`, even to the same length, so a writer that
opened the file earlier can tell its view is stale (3FS does the same): its Close and
Sync carry the version their length is based on, and session.py refuses a stale
report that would grow the file again.

The metaserver never sees chunk bytes, so the caller trims storage after the change.
The reply carries `old_length`, the length just before the change, read in the same
transaction: a length the caller read earlier (a Stat) may already be behind a
writer that extended the file meanwhile, and chunks past it would then survive the
truncate and come back on the next growth. The caller removes chunks up to the
larger of `old_length` and what storage holds (QueryLastChunk), which also covers a
writer's bytes that reached storage but not yet the metaserver, and a retried
truncate whose first attempt already changed the length.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import InvalidArgument, IsADirectory
from emberfs.proto import meta_pb2

from ..txn import USED_BYTES, MetaTxn
from .nodes import touch
from .perm import W, Caller, check
from .resolve import lookup

__all__ = ["MAX_FILE_LENGTH", "apply_truncate", "check_file", "truncate"]

MAX_FILE_LENGTH = 2**63 - 1  # what an off_t can address


def check_file(inode: meta_pb2.Inode) -> None:
    """Files only: a directory is EISDIR, anything else EINVAL."""
    if inode.type == meta_pb2.DIRECTORY:
        raise IsADirectory(f"inode {inode.inode_id} is a directory")
    if inode.type != meta_pb2.FILE:
        raise InvalidArgument(f"inode {inode.inode_id} is not a regular file")


def apply_truncate(tx: MetaTxn, inode: meta_pb2.Inode, length: int) -> int:
    """Set the length, bump the truncate version, keep used_bytes in step; stores inode.
    Returns the length before the change."""
    if not 0 <= length <= MAX_FILE_LENGTH:
        raise InvalidArgument(f"length {length} is outside 0..{MAX_FILE_LENGTH}")
    old_length = inode.length
    tx.add_counter(USED_BYTES, length - old_length)
    inode.length = length
    inode.truncate_version += 1
    touch(inode, tx.now_ns)
    tx.put_inode(inode)
    return old_length


def truncate(tx: MetaTxn, caller: Caller, parts: Sequence[str], length: int) -> meta_pb2.TruncateResponse:
    inode = lookup(tx, caller, parts, follow=True)
    check_file(inode)
    check(caller, inode, W, "truncate")
    old_length = apply_truncate(tx, inode, length)
    return meta_pb2.TruncateResponse(inode=inode, old_length=old_length)
