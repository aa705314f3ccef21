"""SetAttr: chmod, chown and utime in one request; any change also sets ctime.

Every requested change is checked before any is applied, so a refused request
changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import InvalidArgument
from emberfs.common.paths import check_mode
from emberfs.proto import meta_pb2

from ..txn import MetaTxn
from .perm import Caller, check_chmod, check_chown, check_utime
from .resolve import lookup

__all__ = ["set_attr"]


def set_attr(
    tx: MetaTxn,
    caller: Caller,
    parts: Sequence[str],
    *,
    follow_symlinks: bool = True,
    mode: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    atime_ns: int | None = None,
    mtime_ns: int | None = None,
    times_now: bool = False,
) -> meta_pb2.SetAttrResponse:
    if times_now and (atime_ns is not None or mtime_ns is not None):
        raise InvalidArgument("times_now excludes explicit atime_ns/mtime_ns")
    inode = lookup(tx, caller, parts, follow=follow_symlinks)
    if mode is not None:
        mode = check_chmod(caller, inode, check_mode(mode))
    if uid is not None or gid is not None:
        check_chown(caller, inode, uid, gid)
    explicit = atime_ns is not None or mtime_ns is not None
    if explicit or times_now:
        check_utime(caller, inode, explicit=explicit)

    now = tx.now_ns
    if mode is not None:
        inode.mode = mode
    if uid is not None:
        inode.uid = uid
    if gid is not None:
        inode.gid = gid
    if times_now:
        inode.atime_ns = inode.mtime_ns = now
    if atime_ns is not None:
        inode.atime_ns = atime_ns
    if mtime_ns is not None:
        inode.mtime_ns = mtime_ns
    inode.ctime_ns = now
    tx.put_inode(inode)
    return meta_pb2.SetAttrResponse(inode=inode)
