"""Rename: move an entry atomically, replacing the target by POSIX rules.

Checks, in order: both paths name something other than the root (EBUSY); the
source exists; the target is the same inode (success, nothing changes, as POSIX
requires); a directory is not moved into its own subtree (EINVAL: walk the target
parent's parent_id chain up to the root); permissions (w+x on both parents, the
sticky rule for the moved and the replaced entry, w on a directory that changes
parent since its '..' changes); then the replace rules: dir over empty dir,
non-dir over non-dir; dir over non-empty dir is ENOTEMPTY, dir over non-dir
ENOTDIR, non-dir over dir EISDIR. The replaced inode loses a link and is destroyed
(or sent to gc) at zero.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import Busy, DirectoryNotEmpty, InvalidArgument, IsADirectory, NotADirectory, NotFound
from emberfs.proto import meta_pb2

from ..txn import ROOT_ID, MetaTxn
from .nodes import add_entry, drop_link, remove_entry
from .perm import W, X, Caller, check, check_sticky
from .resolve import parent_dir

__all__ = ["rename"]


def rename(tx: MetaTxn, caller: Caller, src: Sequence[str], dst: Sequence[str]) -> meta_pb2.RenameResponse:
    if not src or not dst:
        raise Busy("the root directory cannot be renamed or replaced")
    src_parent, src_name = parent_dir(tx, caller, src)
    check(caller, src_parent, X, "search")
    src_entry = tx.lookup(src_parent.inode_id, src_name)
    if src_entry is None:
        raise NotFound(f"{src_name!r} does not exist")
    dst_parent, dst_name = parent_dir(tx, caller, dst)
    if dst_parent.inode_id == src_parent.inode_id:
        dst_parent = src_parent  # one object, so both roles' changes land together
    check(caller, dst_parent, X, "search")
    dst_entry = tx.lookup(dst_parent.inode_id, dst_name)
    inode = tx.inode(src_entry.child_id)
    if dst_entry is not None and dst_entry.child_id == inode.inode_id:
        return meta_pb2.RenameResponse(inode=inode)
    is_dir = inode.type == meta_pb2.DIRECTORY
    if is_dir and _inside(tx, dst_parent, inode.inode_id):
        raise InvalidArgument("cannot move a directory into its own subtree")
    replaced = tx.inode(dst_entry.child_id) if dst_entry is not None else None

    check(caller, src_parent, W | X, "rename")
    check_sticky(caller, src_parent, inode)
    check(caller, dst_parent, W | X, "rename")
    if replaced is not None:
        check_sticky(caller, dst_parent, replaced)
    if is_dir and dst_parent is not src_parent:
        check(caller, inode, W, "move directory")

    if replaced is not None:
        if replaced.type == meta_pb2.DIRECTORY:
            if not is_dir:
                raise IsADirectory(f"{dst_name!r} is a directory")
            if tx.has_entries(replaced.inode_id):
                raise DirectoryNotEmpty(f"{dst_name!r} is not empty")
        elif is_dir:
            raise NotADirectory(f"{dst_name!r} is not a directory")
        remove_entry(tx, dst_parent, dst_name, replaced)
        drop_link(tx, replaced)
    remove_entry(tx, src_parent, src_name, inode)
    inode.ctime_ns = tx.now_ns
    add_entry(tx, dst_parent, dst_name, inode)
    return meta_pb2.RenameResponse(inode=inode)


def _inside(tx: MetaTxn, directory: meta_pb2.Inode, ancestor_id: int) -> bool:
    """Whether directory is ancestor_id or lies below it."""
    current = directory
    while True:
        if current.inode_id == ancestor_id:
            return True
        if current.inode_id == ROOT_ID:
            return False
        current = tx.inode(current.parent_id)
