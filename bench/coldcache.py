"""Cold reads: the page cache emptied before a data-loader epoch, so every source
starts from its disk, as a dataset larger than memory would.

As root the whole cache is dropped (`sync`, then 3 written to /proc/sys/vm/drop_caches:
page cache, dentries and inodes). Otherwise each file under the given directories (the
local shards, the clusters' chunk files) is written back and then advised away with
posix_fadvise(POSIX_FADV_DONTNEED); pages another process has mapped stay. The answer
says which was done, for the row's detail.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DROP_CACHES", "drop_page_caches"]

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_page_caches(directories: Iterable[Path], *, control: Path = DROP_CACHES) -> str:
    """Empty the page cache of everything, or of the files under `directories`; returns how."""
    os.sync()
    try:
        with open(control, "w") as f:
            f.write("3\n")
        return "page cache dropped (drop_caches)"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    if not hasattr(os, "posix_fadvise"):
        return f"page cache not dropped (drop_caches: {why}; no posix_fadvise here)"
    count = 0
    for directory in directories:
        for parent, _, files in os.walk(directory):
            for name in files:
                if _advise_away(Path(parent) / name):
                    count += 1
    return f"page cache of {count} files dropped (fadvise DONTNEED; drop_caches: {why})"


def _advise_away(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone meanwhile, a socket, a symlink: nothing of ours to drop
        return False
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
