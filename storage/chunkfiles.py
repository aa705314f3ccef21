"""Where a target keeps chunk bytes, and the small file operations the store needs.

Layout under the target directory:

    chunks/<aa>/<bb>/<inode:016x>-<index:08x>                 committed bytes
    chunks/<aa>/<bb>/<inode:016x>-<index:08x>.<ver>.pending   a pending version
    chunks/<aa>/<bb>/<inode:016x>-<index:08x>.<ver>.pending~  one being written

`aa`/`bb` come from a hash of the chunk key, so no directory grows huge and
sequential inodes spread evenly. A pending version sits beside its chunk file so
commit is one `os.replace` within a directory (atomic, and one directory fsync
makes it durable). A pending file is built under the `~` name and renamed when
complete, so whoever opens `.pending` sees a whole version or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading

import crc32c

from .records import ChunkId, encode_key
from .updateplan import PendingPlan

__all__ = [
    "ChunkPaths",
    "advise_willneed",
    "file_crc32c",
    "fsync_dir",
    "fsync_file",
    "pread_exact",
    "unlink_quiet",
    "write_pending_file",
]

_COPY_STEP = 1 << 30


class ChunkPaths:
    """Path scheme of one target's chunk files (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "chunks")
        self._known_dirs: set[str] = set()
        self._mkdir_lock = threading.Lock()  # so no writer outruns the parent's fsync
        os.makedirs(self.root, exist_ok=True)

    def directory(self, chunk_id: ChunkId) -> str:
        h = crc32c.crc32c(encode_key(chunk_id))
        return os.path.join(self.root, f"{h & 0xFF:02x}", f"{(h >> 8) & 0xFF:02x}")

    def chunk(self, chunk_id: ChunkId) -> str:
        name = f"{chunk_id.inode_id:016x}-{chunk_id.chunk_index:08x}"
        return os.path.join(self.directory(chunk_id), name)

    def pending(self, chunk_id: ChunkId, update_version: int) -> str:
        return f"{self.chunk(chunk_id)}.{update_version}.pending"

    def partial(self, chunk_id: ChunkId, update_version: int) -> str:
        return self.pending(chunk_id, update_version) + "~"

    def pending_files(self, chunk_id: ChunkId, update_version: int) -> tuple[str, str]:
        """Both names a pending version's file may have."""
        pending = self.pending(chunk_id, update_version)
        return pending, pending + "~"

    def ensure_directory(self, chunk_id: ChunkId) -> str:
        """Create the chunk's directory if needed; a new directory entry is made
        durable by fsyncing its parent, or a committed chunk could vanish with it."""
        path = self.directory(chunk_id)
        if path in self._known_dirs:
            return path
        with self._mkdir_lock:
            middle = os.path.dirname(path)
            for parent, child in ((self.root, middle), (middle, path)):
                try:
                    os.mkdir(child)
                except FileExistsError:
                    continue
                fsync_dir(parent)
            self._known_dirs.add(path)
        return path


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quiet(*paths: str) -> None:
    """Unlink files that may not exist. ENOTDIR also means "does not exist" (a path
    component is not a directory), so a failed target's cleanup cannot raise here."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(path)


class WouldBlock(Exception):
    """A no-wait read found bytes that are not in the page cache: read in the I/O pool."""


_NOWAIT = getattr(os, "RWF_NOWAIT", None)


def pread_cached(fd: int, length: int, offset: int) -> bytes:
    """Exactly `length` bytes if the page cache holds them all, else WouldBlock.

    preadv2(RWF_NOWAIT) returns EAGAIN (or a short count) instead of waiting for
    the disk, so the caller can serve cached bytes on its event loop and send the
    rest to threads. Kernels or file systems without it (EOPNOTSUPP) count as misses.
    """
    global _NOWAIT
    if _NOWAIT is None:
        raise WouldBlock()
    buffer = bytearray(length)
    try:
        got = os.preadv(fd, [buffer], offset, _NOWAIT)
    except BlockingIOError:
        raise WouldBlock() from None
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            _NOWAIT = None  # never supported here: stop trying
            raise WouldBlock() from None
        raise
    if got != length:
        raise WouldBlock()
    return bytes(buffer)


_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


def advise_willneed(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start reading a range into the page cache now, without waiting
    for it: a later pread of many such ranges finds them read together (the disk's
    queue holds all of them) instead of one after another. Only a hint: where the
    system refuses it, the pread simply waits."""
    if _WILLNEED is None:
        return
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, _WILLNEED)


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read exactly `length` bytes (pread may return fewer for huge reads)."""
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            raise OSError(errno.EIO, f"chunk file ends at {offset + got}, not {offset + length}")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _copy_prefix(src: int, dst: int, count: int) -> None:
    # copy_file_range stays in the kernel (and reflinks where the file system can).
    done = 0
    try:
        while done < count:
            n = os.copy_file_range(src, dst, min(count - done, _COPY_STEP), done, done)
            if n == 0:
                raise OSError(errno.EIO, f"committed chunk file shorter than {count} bytes")
            done += n
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    _pwrite_all(dst, pread_exact(src, count - done, done), done)


def write_pending_file(
    partial_path: str, final_path: str, committed_path: str | None, plan: PendingPlan
) -> None:
    """Build the pending version at `partial_path`, then rename it to `final_path`.

    No fsync here: a pending version that does not survive a crash is discarded on
    restart anyway (CRAQ recovers it from the chain); commit fsyncs it first.
    """
    fd = os.open(partial_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if plan.copy_prefix:
            assert committed_path is not None
            src = os.open(committed_path, os.O_RDONLY)
            try:
                _copy_prefix(src, fd, plan.copy_prefix)
            finally:
                os.close(src)
        for offset, data in plan.writes:
            _pwrite_all(fd, data, offset)
        os.ftruncate(fd, plan.length)  # zero-fills any gap, cuts any excess
    finally:
        os.close(fd)
    os.rename(partial_path, final_path)


def file_crc32c(path: str, chunk: int = 1 << 20) -> tuple[int, int] | None:
    """(length, CRC32C) of a whole file, or None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        crc, offset = 0, 0
        while True:
            block = os.pread(fd, chunk, offset)
            if not block:
                return offset, crc
            crc = crc32c.crc32c(block, crc)
            offset += len(block)
    finally:
        os.close(fd)
