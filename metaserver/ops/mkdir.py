"""Mkdir, optionally with parents (mkdir -p) and tolerating an existing directory.

With `parents`, missing ancestors are made with the requested mode plus u+wx (as GNU
mkdir -p does, so the walk can continue into them) and inherit layout defaults; the
request's layout applies to the last directory only. An existing entry on the way
is followed if it is a symlink: a directory continues the walk, anything else (or a
dangling link) fails as the equivalent mkdir(2) calls would.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import AlreadyExists, NotADirectory, NotFound
from emberfs.proto import meta_pb2

from ..txn import ROOT_ID, Entry, MetaTxn
from .nodes import add_entry, inherit_layout, new_inode
from .perm import W, X, Caller, check
from .resolve import parent_dir, walk

__all__ = ["mkdir"]

_U_WX = 0o300


def mkdir(
    tx: MetaTxn,
    caller: Caller,
    parts: Sequence[str],
    *,
    mode: int,
    parents: bool = False,
    exist_ok: bool = False,
    chunk_size: int = 0,
    stripe: int = 0,
) -> meta_pb2.MkdirResponse:
    if not parts:
        if exist_ok:
            return meta_pb2.MkdirResponse(inode=tx.inode(ROOT_ID))
        raise AlreadyExists("'/' exists")
    if parents:
        current = tx.inode(ROOT_ID)
        for name in parts[:-1]:
            current = _descend(tx, caller, current, name, mode | _U_WX)
    else:
        current, _ = parent_dir(tx, caller, parts)
    name = parts[-1]
    if _entry(tx, caller, current, name) is None:
        return meta_pb2.MkdirResponse(inode=_make(tx, caller, current, name, mode, chunk_size, stripe))
    existing = walk(tx, caller, [name], follow_last=True, start=current).inode if exist_ok else None
    if existing is None or existing.type != meta_pb2.DIRECTORY:
        raise AlreadyExists(f"{name!r} already exists")
    return meta_pb2.MkdirResponse(inode=existing)


def _entry(tx: MetaTxn, caller: Caller, directory: meta_pb2.Inode, name: str) -> Entry | None:
    check(caller, directory, X, "search")
    return tx.lookup(directory.inode_id, name)


def _descend(tx: MetaTxn, caller: Caller, current: meta_pb2.Inode, name: str, mode: int) -> meta_pb2.Inode:
    """One step of mkdir -p: the directory `name` under current, made if missing."""
    if _entry(tx, caller, current, name) is None:
        return _make(tx, caller, current, name, mode, 0, 0)
    found = walk(tx, caller, [name], follow_last=True, start=current).inode
    if found is None:
        raise NotFound(f"{name!r} is a dangling symlink")
    if found.type != meta_pb2.DIRECTORY:
        raise NotADirectory(f"{name!r} is not a directory")
    return found


def _make(
    tx: MetaTxn, caller: Caller, parent: meta_pb2.Inode, name: str, mode: int, chunk_size: int, stripe: int
) -> meta_pb2.Inode:
    check(caller, parent, W | X, "mkdir")
    layout = inherit_layout(parent, chunk_size, stripe, tx)
    inode = new_inode(tx, caller, parent, meta_pb2.DIRECTORY, mode, layout=layout)
    add_entry(tx, parent, name, inode)
    return inode
