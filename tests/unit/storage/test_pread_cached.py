"""pread_cached: bytes the page cache holds come back at once; anything else is a
WouldBlock (the caller reads in its I/O threads), never a wait and never short bytes."""

import os
import time

import pytest

from emberfs.storage import chunkfiles as files
from emberfs.storage.chunkfiles import WouldBlock, pread_cached


def _fs_type(path) -> str:
    """The file system type holding path (longest mount point prefix in /proc/self/mounts)."""
    best, kind = "", ""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, point, fstype, *_ = line.split()
            if str(path).startswith(point) and len(point) > len(best):
                best, kind = point, fstype
    return kind


def _file(tmp_path, data: bytes) -> int:
    path = tmp_path / "chunk"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="no preadv2 RWF_NOWAIT on this platform")
def test_cached_bytes_are_read_and_evicted_ones_would_block(tmp_path) -> None:
    if _fs_type(tmp_path) == "tmpfs":
        pytest.skip("tmpfs pages cannot be dropped from the page cache")
    data = os.urandom(1 << 20)
    fd = _file(tmp_path, data)
    try:
        os.fsync(fd)
        assert pread_cached(fd, 4096, 8192) == data[8192:12288]  # just written: cached
        assert pread_cached(fd, len(data), 0) == data
        # Clean pages are dropped on request, but the kernel may keep some a moment
        # longer (seen once in CI): ask again before concluding anything.
        for _ in range(20):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            try:
                pread_cached(fd, 65536, 512 * 1024)
            except WouldBlock:
                break
            time.sleep(0.05)
        else:
            pytest.skip("the kernel kept the file's pages cached after POSIX_FADV_DONTNEED")
        assert files.pread_exact(fd, 65536, 512 * 1024) == data[512 * 1024:576 * 1024]  # the fallback
    finally:
        os.close(fd)


def test_a_read_past_the_end_is_not_returned_short(tmp_path) -> None:
    fd = _file(tmp_path, b"x" * 1000)
    try:
        with pytest.raises(WouldBlock):  # 1000 bytes exist, 4096 were asked: not a full answer
            pread_cached(fd, 4096, 0)
    finally:
        os.close(fd)


def test_without_rwf_nowait_every_read_is_a_miss(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(files, "_NOWAIT", None)
    fd = _file(tmp_path, b"y" * 4096)
    try:
        with pytest.raises(WouldBlock):
            pread_cached(fd, 4096, 0)
    finally:
        os.close(fd)
