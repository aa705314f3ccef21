"""Remove: unlink a file, rmdir an empty directory, or remove a whole tree.

Checks follow Linux's may_delete order: w+x on the parent, the sticky-bit rule,
then the kind of entry. A recursive removal needs r+w+x on every directory it
empties (as rm -r does) and honours the sticky bit per entry; it runs in the one
transaction, so it either removes everything or, on any refusal, nothing. It walks
with an explicit stack, so a deep tree cannot exhaust Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import Busy, DirectoryNotEmpty, InvalidArgument, IsADirectory, NotADirectory, NotFound
from emberfs.proto import meta_pb2

from ..txn import MetaTxn
from .nodes import drop_link, remove_entry
from .perm import R, W, X, Caller, check, check_sticky
from .resolve import parent_dir

__all__ = ["remove"]


def remove(tx: MetaTxn, caller: Caller, parts: Sequence[str], *, kind: int) -> meta_pb2.RemoveResponse:
    if kind not in (meta_pb2.NON_DIRECTORY, meta_pb2.EMPTY_DIRECTORY, meta_pb2.RECURSIVE):
        raise InvalidArgument(f"unknown remove kind {kind}")
    if not parts:
        raise Busy("the root directory cannot be removed")
    parent, name = parent_dir(tx, caller, parts)
    check(caller, parent, X, "search")
    entry = tx.lookup(parent.inode_id, name)
    if entry is None:
        raise NotFound(f"{name!r} does not exist")
    child = tx.inode(entry.child_id)
    check(caller, parent, W | X, "remove")
    check_sticky(caller, parent, child)
    removed = 0
    if child.type == meta_pb2.DIRECTORY:
        if kind == meta_pb2.NON_DIRECTORY:
            raise IsADirectory(f"{name!r} is a directory")
        if kind == meta_pb2.EMPTY_DIRECTORY and tx.has_entries(child.inode_id):
            raise DirectoryNotEmpty(f"{name!r} is not empty")
        removed = _empty_tree(tx, caller, child)
    elif kind == meta_pb2.EMPTY_DIRECTORY:
        raise NotADirectory(f"{name!r} is not a directory")
    remove_entry(tx, parent, name, child)
    drop_link(tx, child)
    return meta_pb2.RemoveResponse(removed=removed + 1)


def _empty_tree(tx: MetaTxn, caller: Caller, top: meta_pb2.Inode) -> int:
    """Remove everything below `top` (not top itself); return the entries removed."""
    removed = 0
    stack = [top]
    subdirs: list[tuple[meta_pb2.Inode, str, meta_pb2.Inode]] = []  # (parent, name, dir)
    while stack:
        directory = stack.pop()
        check(caller, directory, R | W | X, "remove tree")
        for entry in list(tx.entries(directory.inode_id)):
            child = tx.inode(entry.child_id)
            check_sticky(caller, directory, child)
            if child.type == meta_pb2.DIRECTORY:
                subdirs.append((directory, entry.name, child))
                stack.append(child)
            else:
                tx.delete_entry(directory.inode_id, entry.name)
                drop_link(tx, child)
                removed += 1
    # Parents were recorded before their subdirectories; undo in reverse so each
    # directory is empty when it goes. Their parents die too, so no nlink upkeep.
    for directory, name, child in reversed(subdirs):
        tx.delete_entry(directory.inode_id, name)
        drop_link(tx, child)
        removed += 1
    return removed
