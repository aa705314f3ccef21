"""Symlink and Readlink. A target is free text (1..4096 bytes, no NUL); it is only
interpreted when a path walk passes through the link (see resolve.py)."""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import AlreadyExists, InvalidArgument, NameTooLong
from emberfs.common.paths import MAX_PATH_BYTES
from emberfs.proto import meta_pb2

from ..txn import MetaTxn
from .nodes import add_entry, new_inode
from .perm import W, X, Caller, check
from .resolve import lookup, parent_dir

__all__ = ["check_target", "readlink", "symlink"]


def check_target(target: str) -> str:
    if not target:
        raise InvalidArgument("a symlink target cannot be empty")
    if "\x00" in target:
        raise InvalidArgument("a symlink target cannot contain NUL")
    try:
        size = len(target.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidArgument("a symlink target must be encodable as UTF-8") from exc
    if size > MAX_PATH_BYTES:
        raise NameTooLong(f"symlink target is {size} bytes; the limit is {MAX_PATH_BYTES}")
    return target


def symlink(tx: MetaTxn, caller: Caller, target: str, parts: Sequence[str]) -> meta_pb2.SymlinkResponse:
    check_target(target)
    if not parts:
        raise AlreadyExists("'/' exists")
    parent, name = parent_dir(tx, caller, parts)
    check(caller, parent, X, "search")
    if tx.lookup(parent.inode_id, name) is not None:
        raise AlreadyExists(f"{name!r} already exists")
    check(caller, parent, W | X, "symlink")
    inode = new_inode(tx, caller, parent, meta_pb2.SYMLINK, 0o777, symlink_target=target)
    add_entry(tx, parent, name, inode)
    return meta_pb2.SymlinkResponse(inode=inode)


def readlink(tx: MetaTxn, caller: Caller, parts: Sequence[str]) -> meta_pb2.ReadlinkResponse:
    inode = lookup(tx, caller, parts, follow=False)
    if inode.type != meta_pb2.SYMLINK:
        raise InvalidArgument("not a symlink")
    return meta_pb2.ReadlinkResponse(target=inode.symlink_target)
