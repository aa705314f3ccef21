"""Inode and directory-entry bookkeeping shared by the operations.

These keep the namespace invariants in one place:
- a directory's nlink is 2 + its number of subdirectories;
- a directory's mtime and ctime change whenever its entries change;
- the counters (files, directories, symlinks, used_bytes) move with every inode
  that is born or destroyed, in the same transaction;
- a file that loses its last link goes to `gc` when it has chains (its chunks must
  still be removed from storage), otherwise it is simply deleted; its write
  sessions go with it.
Each helper stores the inodes it changes, so callers never hold a stale copy: when
two roles name the same directory (rename within one directory) pass the same object.
"""

from __future__ import annotations

from emberfs.common.errors import Internal
from emberfs.proto import common_pb2, meta_pb2

from ..config import check_chunk_size, check_stripe
from ..txn import DIRECTORIES, FILES, NEXT_INODE, SYMLINKS, USED_BYTES, MetaTxn
from .perm import S_ISGID, Caller

__all__ = ["add_entry", "drop_link", "inherit_layout", "new_inode", "remove_entry", "touch", "touch_parent"]

_COUNTER: dict[int, bytes] = {meta_pb2.FILE: FILES, meta_pb2.DIRECTORY: DIRECTORIES, meta_pb2.SYMLINK: SYMLINKS}


def touch(inode: meta_pb2.Inode, now_ns: int) -> None:
    inode.mtime_ns = now_ns
    inode.ctime_ns = now_ns


def inherit_layout(parent: meta_pb2.Inode, chunk_size: int, stripe: int, tx: MetaTxn) -> common_pb2.Layout:
    """Layout defaults: the request's values, else the parent directory's, else the config's."""
    chunk = chunk_size or parent.layout.chunk_size or tx.config.default_chunk_size
    width = stripe or parent.layout.stripe or tx.config.default_stripe
    return common_pb2.Layout(chunk_size=check_chunk_size(chunk), stripe=check_stripe(width))


def new_inode(
    tx: MetaTxn,
    caller: Caller,
    parent: meta_pb2.Inode,
    kind: int,
    mode: int,
    *,
    layout: common_pb2.Layout | None = None,
    symlink_target: str = "",
) -> meta_pb2.Inode:
    """A fresh inode owned by the caller (not yet linked anywhere; not yet stored).

    BSD/setgid-directory rule: under a setgid directory the new inode takes the
    directory's group, and a new subdirectory inherits the setgid bit itself.
    """
    now = tx.now_ns
    inode = meta_pb2.Inode(
        inode_id=tx.next_id(NEXT_INODE),
        type=kind,  # type: ignore[arg-type]
        mode=mode,
        uid=caller.uid,
        gid=parent.gid if parent.mode & S_ISGID else caller.gid,
        nlink=2 if kind == meta_pb2.DIRECTORY else 1,
        atime_ns=now,
        mtime_ns=now,
        ctime_ns=now,
    )
    if kind == meta_pb2.DIRECTORY:
        inode.parent_id = parent.inode_id
        if parent.mode & S_ISGID:
            inode.mode |= S_ISGID
    if layout is not None:
        inode.layout.CopyFrom(layout)
    if kind == meta_pb2.SYMLINK:
        inode.symlink_target = symlink_target
        inode.length = len(symlink_target.encode("utf-8"))
    tx.add_counter(_COUNTER[kind], 1)
    return inode


def touch_parent(tx: MetaTxn, parent: meta_pb2.Inode, *, nlink_changed: bool) -> None:
    """A directory whose entries changed: new times, stored; unless only its times would
    change and it changed less than the config's dir_mtime_skip ago."""
    if not nlink_changed and tx.now_ns - parent.mtime_ns < tx.config.dir_mtime_skip_ns:
        return
    touch(parent, tx.now_ns)
    tx.put_inode(parent)


def add_entry(tx: MetaTxn, parent: meta_pb2.Inode, name: str, child: meta_pb2.Inode) -> None:
    """Link child under parent as name; stores both."""
    tx.put_entry(parent.inode_id, name, child.inode_id, child.type)
    is_dir = child.type == meta_pb2.DIRECTORY
    if is_dir:
        parent.nlink += 1
        child.parent_id = parent.inode_id
    touch_parent(tx, parent, nlink_changed=is_dir)
    tx.put_inode(child)


def remove_entry(tx: MetaTxn, parent: meta_pb2.Inode, name: str, child: meta_pb2.Inode) -> None:
    """Unlink name from parent (the child itself is left to the caller); stores parent."""
    tx.delete_entry(parent.inode_id, name)
    is_dir = child.type == meta_pb2.DIRECTORY
    if is_dir:
        parent.nlink -= 1
    touch_parent(tx, parent, nlink_changed=is_dir)


def drop_link(tx: MetaTxn, inode: meta_pb2.Inode) -> None:
    """The inode lost one directory entry; destroy it if that was its last."""
    if inode.type != meta_pb2.DIRECTORY and inode.nlink > 1:
        inode.nlink -= 1
        inode.ctime_ns = tx.now_ns
        tx.put_inode(inode)
        return
    if inode.type not in _COUNTER:
        raise Internal(f"inode {inode.inode_id} has unknown type {inode.type}")
    tx.add_counter(_COUNTER[inode.type], -1)
    if inode.type == meta_pb2.FILE:
        tx.add_counter(USED_BYTES, -inode.length)
        tx.delete_sessions_of(inode.inode_id)
        if inode.layout.chain_ids:
            inode.nlink = 0
            inode.ctime_ns = tx.now_ns
            tx.put_gc(inode)  # the collector removes its chunks, then the record
    tx.delete_inode(inode.inode_id)
