"""Plain records the client returns: `StatResult` and `StatFsResult`.

`StatResult` uses `os.stat_result`'s attribute names so code written against the
local file system (`stat.S_ISDIR(st.st_mode)`, `st.st_mtime`) works unchanged. The
wire `Inode` keeps the type apart from the permission bits; here they are folded
back into one `st_mode`, as the kernel reports them.
"""

from __future__ import annotations

import stat as _stat
from dataclasses import dataclass

from emberfs.common.errors import Internal
from emberfs.proto import meta_pb2

__all__ = ["StatFsResult", "StatResult", "stat_from_inode", "statfs_from_response"]

_TYPE_BITS = {
    meta_pb2.FILE: _stat.S_IFREG,
    meta_pb2.DIRECTORY: _stat.S_IFDIR,
    meta_pb2.SYMLINK: _stat.S_IFLNK,
}

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class StatResult:
    """One inode's attributes, named like `os.stat_result`, plus its file layout."""

    st_ino: int
    st_mode: int  # type bits (S_IFREG/S_IFDIR/S_IFLNK) | permission bits
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int  # file bytes; for a symlink, the length of its target
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    chunk_size: int  # files: fixed at create; directories: the default children inherit
    stripe: int
    chain_ids: tuple[int, ...]
    truncate_version: int  # bumped by every truncate so a writer can notice one

    @property
    def st_atime(self) -> float:
        return self.st_atime_ns / _NS_PER_S

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / _NS_PER_S

    @property
    def st_ctime(self) -> float:
        return self.st_ctime_ns / _NS_PER_S


@dataclass(frozen=True, slots=True)
class StatFsResult:
    """Namespace-wide counters from the metaserver."""

    inodes: int
    files: int
    directories: int
    symlinks: int
    used_bytes: int  # sum of file lengths, one replica
    capacity_bytes: int  # reported by storage targets; 0 while none report
    free_bytes: int


def stat_from_inode(inode: meta_pb2.Inode) -> StatResult:
    type_bits = _TYPE_BITS.get(inode.type)
    if type_bits is None:
        # The contract says every inode has a type; a reply without one is a server bug,
        # and guessing "regular file" would hide it.
        raise Internal(f"inode {inode.inode_id} has no type ({inode.type})")
    layout = inode.layout
    return StatResult(
        st_ino=inode.inode_id,
        st_mode=type_bits | (inode.mode & 0o7777),
        st_nlink=inode.nlink,
        st_uid=inode.uid,
        st_gid=inode.gid,
        st_size=inode.length,
        st_atime_ns=inode.atime_ns,
        st_mtime_ns=inode.mtime_ns,
        st_ctime_ns=inode.ctime_ns,
        chunk_size=layout.chunk_size,
        stripe=layout.stripe,
        chain_ids=tuple(layout.chain_ids),
        truncate_version=inode.truncate_version,
    )


def statfs_from_response(resp: meta_pb2.StatFsResponse) -> StatFsResult:
    return StatFsResult(
        inodes=resp.inodes,
        files=resp.files,
        directories=resp.directories,
        symlinks=resp.symlinks,
        used_bytes=resp.used_bytes,
        capacity_bytes=resp.capacity_bytes,
        free_bytes=resp.free_bytes,
    )
