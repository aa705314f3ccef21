"""Pure rules of the fsspec layer: emberfs:// URLs, fsspec byte ranges, info dicts.

No I/O here; `fsspec.py` applies these and the tests check them as tables.
"""

from __future__ import annotations

import stat as _stat
from typing import Any

from fsspec.utils import stringify_path

from ._stat import StatResult

__all__ = ["PREFIX", "TO_EOF", "direct_range", "info_dict", "join", "resolve_range", "split_url"]

PREFIX = "emberfs://"
TO_EOF = 2**62  # a read length that means "to the end": reads are clipped at EOF


def split_url(url: str) -> tuple[str | None, str]:
    """("HOST:PORT" or None, "/path") of an emberfs:// URL or a plain path."""
    url = stringify_path(url)
    address = None
    if url.startswith(PREFIX):
        netloc, slash, rest = url[len(PREFIX) :].partition("/")
        address, url = netloc or None, slash + rest
    return address, "/" + url.strip("/")


def resolve_range(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """fsspec's byte range [start, end) of a file of `size` bytes as (offset, length):
    None is the file's start or end, a negative value counts from the end, and the
    range is clipped to the file (an empty range reads b"")."""
    first = 0 if start is None else (max(0, size + start) if start < 0 else start)
    last = size if end is None else (size + end if end < 0 else end)
    first, last = min(first, size), min(last, size)
    return first, max(0, last - first)


def direct_range(start: int | None, end: int | None) -> tuple[int, int] | None:
    """(offset, length) when the range needs no file size (no negative bound), else None."""
    if (start is not None and start < 0) or (end is not None and end < 0):
        return None
    offset = start or 0
    return offset, TO_EOF if end is None else max(0, end - offset)


def info_dict(path: str, st: StatResult, *, islink: bool = False) -> dict[str, Any]:
    """fsspec's info of path (name, size, type "file"/"directory"/"other") plus the
    stat fields; a directory's size is 0, as fsspec backends report it."""
    mode = st.st_mode
    kind = "directory" if _stat.S_ISDIR(mode) else "file" if _stat.S_ISREG(mode) else "other"
    return {
        "name": path,
        "size": st.st_size if kind == "file" else 0,
        "type": kind,
        "islink": islink or _stat.S_ISLNK(mode),
        "mode": mode,
        "ino": st.st_ino,
        "nlink": st.st_nlink,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": st.st_mtime,
        "created": st.st_ctime,
        "chunk_size": st.chunk_size,
    }


def join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name
