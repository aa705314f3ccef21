"""Path resolution: walk components from the root, following symlinks.

Request paths arrive already split and validated (no '.', '..' or empty names), but
symlink targets are free text: they may be relative (to the directory holding the
link) and contain '.' and '..'. '..' follows a directory's parent_id, and stays at
the root. Expanding more than MAX_SYMLINK_DEPTH links in one walk is ELOOP, which
also ends cycles. Every directory searched needs x for the caller (POSIX search
permission), checked before the lookup.

The walk is iterative: the pending components form a stack that a symlink's target
is pushed onto, so no Python recursion depth is involved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from emberfs.common.errors import NotADirectory, NotFound, TooManySymlinks
from emberfs.common.paths import MAX_SYMLINK_DEPTH
from emberfs.proto import meta_pb2

from ..txn import ROOT_ID, MetaTxn
from .perm import X, Caller, check

__all__ = ["Resolved", "lookup", "parent_dir", "walk"]


@dataclasses.dataclass
class Resolved:
    """Where a walk ended.

    inode: the object named, or None when the last name does not exist (its
    parent directory exists). parent/name: the directory entry that named it; None
    when the walk ended on the root or on a '.'/'..' from a symlink target.
    """

    inode: meta_pb2.Inode | None
    parent: meta_pb2.Inode | None
    name: str | None


def walk(
    tx: MetaTxn,
    caller: Caller,
    parts: Sequence[str],
    *,
    follow_last: bool,
    start: meta_pb2.Inode | None = None,
) -> Resolved:
    """Resolve parts from `start` (default: the root).

    A missing or non-directory intermediate component raises NotFound or
    NotADirectory; a missing last component gives Resolved(inode=None, ...).
    With follow_last, a symlink in last place is expanded, and a dangling one
    resolves to its target's (missing) name, as open(O_CREAT) does.
    """
    pending = list(reversed(parts))  # a stack: the next component is at the end
    if start is None:
        tx.prefetch_step(ROOT_ID, _next_name(pending))
    current = start if start is not None else tx.inode(ROOT_ID)
    links = 0
    parent: meta_pb2.Inode | None = None
    name: str | None = None
    while pending:
        part = pending.pop()
        if part in ("", "."):
            if current.type != meta_pb2.DIRECTORY:
                raise NotADirectory(f"inode {current.inode_id} is not a directory")
            parent, name = None, None
            continue
        if current.type != meta_pb2.DIRECTORY:
            raise NotADirectory(f"{part!r}: inode {current.inode_id} is not a directory")
        check(caller, current, X, "search")
        if part == "..":
            current = tx.inode(current.parent_id) if current.inode_id != ROOT_ID else current
            parent, name = None, None
            continue
        entry = tx.lookup(current.inode_id, part)
        last = not pending
        if entry is None:
            if last:
                return Resolved(None, current, part)
            raise NotFound(f"{part!r} does not exist")
        tx.prefetch_step(entry.child_id, _next_name(pending))  # on etcd: one round trip per step, not two
        child = tx.inode(entry.child_id)
        if child.type == meta_pb2.SYMLINK and (not last or follow_last):
            links += 1
            if links > MAX_SYMLINK_DEPTH:
                raise TooManySymlinks(f"more than {MAX_SYMLINK_DEPTH} symlinks in one path")
            target = child.symlink_target
            if target.startswith("/"):
                current = tx.inode(ROOT_ID)
            pending.extend(reversed(target.split("/")))
            parent, name = None, None
            continue
        parent, name, current = current, part, child
    return Resolved(current, parent, name)


def _next_name(pending: list[str]) -> str | None:
    """The entry the walk looks up next, if the next component is a plain name."""
    return pending[-1] if pending and pending[-1] not in ("", ".", "..") else None


def lookup(tx: MetaTxn, caller: Caller, parts: Sequence[str], *, follow: bool = True) -> meta_pb2.Inode:
    """The inode a path names; NotFound if it does not exist."""
    found = walk(tx, caller, parts, follow_last=follow)
    if found.inode is None:
        raise NotFound(f"{found.name!r} does not exist")
    return found.inode


def parent_dir(tx: MetaTxn, caller: Caller, parts: Sequence[str]) -> tuple[meta_pb2.Inode, str]:
    """The directory that holds the last component, and that component's name.

    Symlinks among the ancestors are followed; the last name itself is not
    resolved (callers look it up, since most must not follow it).
    """
    if not parts:
        raise ValueError("the root has no parent entry")  # callers handle the root first
    directory = lookup(tx, caller, parts[:-1], follow=True)
    if directory.type != meta_pb2.DIRECTORY:
        raise NotADirectory(f"{'/' + '/'.join(parts[:-1])!r} is not a directory")
    return directory, parts[-1]
