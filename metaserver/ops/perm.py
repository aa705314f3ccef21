"""POSIX permission rules, as pure functions of the caller and the inodes involved.

uid 0 bypasses every mode check (CAP_DAC_OVERRIDE), but not the rules that are not
mode checks (only root or the owner may chmod, etc.: those it passes by being root).
Errors follow Linux: a missing mode bit is EACCES (PermissionDenied); an ownership
rule (sticky bit, chmod, chown, explicit utime) is EPERM (NotPermitted).
"""

from __future__ import annotations

import dataclasses

from emberfs.common.errors import NotPermitted, PermissionDenied
from emberfs.proto import meta_pb2

__all__ = [
    "R",
    "ROOT",
    "W",
    "X",
    "Caller",
    "check",
    "check_chmod",
    "check_chown",
    "check_sticky",
    "check_utime",
    "may",
]

R, W, X = 4, 2, 1
S_ISUID, S_ISGID, S_ISVTX = 0o4000, 0o2000, 0o1000


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is asking: the token's identity, or the request header's (metaserver/service.py)."""

    uid: int
    gid: int
    groups: frozenset[int] = frozenset()

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups

    @property
    def is_root(self) -> bool:
        return self.uid == 0


ROOT = Caller(0, 0)


def may(caller: Caller, inode: meta_pb2.Inode, want: int) -> bool:
    """Whether caller has all of `want` (R|W|X bits) on inode."""
    if caller.is_root:
        return True
    if caller.uid == inode.uid:
        bits = (inode.mode >> 6) & 7
    elif caller.in_group(inode.gid):
        bits = (inode.mode >> 3) & 7
    else:
        bits = inode.mode & 7
    return bits & want == want


def check(caller: Caller, inode: meta_pb2.Inode, want: int, what: str = "") -> None:
    if not may(caller, inode, want):
        needed = "".join(c for c, bit in (("r", R), ("w", W), ("x", X)) if want & bit)
        raise PermissionDenied(f"{what or 'access'}: needs {needed} on inode {inode.inode_id}")


def check_sticky(caller: Caller, directory: meta_pb2.Inode, entry: meta_pb2.Inode) -> None:
    """In a sticky directory only the entry's owner, the directory's owner or root may
    remove or rename the entry (the /tmp rule)."""
    if directory.mode & S_ISVTX and caller.uid not in (0, directory.uid, entry.uid):
        raise NotPermitted(f"sticky directory {directory.inode_id}: not the owner of the entry")


def check_chmod(caller: Caller, inode: meta_pb2.Inode, mode: int) -> int:
    """Only the owner or root may chmod. Returns the mode to store: as on Linux, a
    non-root caller outside the file's group silently loses the setgid bit."""
    if not caller.is_root and caller.uid != inode.uid:
        raise NotPermitted("chmod: only the owner or root may change the mode")
    if (
        not caller.is_root
        and inode.type != meta_pb2.DIRECTORY
        and mode & S_ISGID
        and not caller.in_group(inode.gid)
    ):
        mode &= ~S_ISGID
    return mode


def check_chown(caller: Caller, inode: meta_pb2.Inode, uid: int | None, gid: int | None) -> None:
    """Only root gives a file away; the owner may move it to one of its own groups."""
    if caller.is_root:
        return
    if uid is not None and uid != inode.uid:
        raise NotPermitted("chown: only root may change the owner")
    if caller.uid != inode.uid:
        raise NotPermitted("chown: not the owner")
    if gid is not None and gid != inode.gid and not caller.in_group(gid):
        raise NotPermitted("chown: the owner may only change the group to one of its groups")


def check_utime(caller: Caller, inode: meta_pb2.Inode, *, explicit: bool) -> None:
    """Explicit times need ownership (EPERM); "now" also accepts write permission (EACCES)."""
    if caller.is_root or caller.uid == inode.uid:
        return
    if explicit:
        raise NotPermitted("utime: only the owner or root may set explicit times")
    check(caller, inode, W, "utime")
