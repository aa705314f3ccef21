"""Link: a second name for a file (or symlink). Directories cannot be hard-linked (EPERM)."""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import AlreadyExists, NotPermitted
from emberfs.proto import meta_pb2

from ..txn import MetaTxn
from .nodes import add_entry
from .perm import W, X, Caller, check
from .resolve import lookup, parent_dir

__all__ = ["link"]


def link(tx: MetaTxn, caller: Caller, src: Sequence[str], dst: Sequence[str]) -> meta_pb2.LinkResponse:
    # link(2) does not follow a symlink in src's last place (linkat without AT_SYMLINK_FOLLOW).
    inode = lookup(tx, caller, src, follow=False)
    if not dst:
        raise AlreadyExists("'/' exists")
    parent, name = parent_dir(tx, caller, dst)
    check(caller, parent, X, "search")
    if tx.lookup(parent.inode_id, name) is not None:
        raise AlreadyExists(f"{name!r} already exists")
    if inode.type == meta_pb2.DIRECTORY:
        raise NotPermitted("directories cannot be hard-linked")
    check(caller, parent, W | X, "link")
    inode.nlink += 1
    inode.ctime_ns = tx.now_ns
    add_entry(tx, parent, name, inode)
    return meta_pb2.LinkResponse(inode=inode)
