"""The two ends of a `put` or `get`: the local disk and the cluster, behind one `_Side`
interface, so transfer.py's engine copies either way with the same code.

A side answers stat/children/readlink about its paths, opens files as async
`Reader`/`Writer`s, and makes directories and symlinks. Errors are the OSError family
naming the path. Local file I/O runs on worker threads so other transfers keep moving.
"""

from __future__ import annotations

import asyncio
import os
import stat as _stat
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from emberfs.common.paths import join as remote_join

from .._client import Client
from .._stat import StatResult
from ._base import basename

__all__ = ["DIR", "FILE", "OTHER", "SYMLINK", "LocalSide", "Node", "Reader", "RemoteSide", "Side", "Stream", "Writer"]

DIR, FILE, SYMLINK, OTHER = "directory", "file", "symlink", "other"


@dataclass(frozen=True, slots=True)
class Node:
    """What a side knows about one path."""

    kind: str  # DIR, FILE, SYMLINK or OTHER (devices, fifos, sockets)
    size: int
    mode: int  # permission bits only


def kind_of(st_mode: int) -> str:
    if _stat.S_ISDIR(st_mode):
        return DIR
    if _stat.S_ISREG(st_mode):
        return FILE
    return SYMLINK if _stat.S_ISLNK(st_mode) else OTHER


def node_of(st: os.stat_result | StatResult) -> Node:
    return Node(kind_of(st.st_mode), st.st_size, _stat.S_IMODE(st.st_mode))


class Reader(Protocol):
    async def read(self, size: int) -> bytes: ...
    async def close(self) -> None: ...


class Writer(Protocol):
    async def write(self, data: bytes) -> int: ...
    async def close(self) -> None: ...


class Stream:
    """A blocking binary file as a Reader/Writer; its I/O runs on a worker thread so
    other transfers keep moving. `own` False leaves stdin/stdout open."""

    def __init__(self, file: BinaryIO, own: bool = True) -> None:
        self._file, self._own = file, own

    async def read(self, size: int) -> bytes:
        return await asyncio.to_thread(self._file.read, size)

    async def write(self, data: bytes) -> int:
        return await asyncio.to_thread(self._file.write, data)

    async def close(self) -> None:
        if self._own:
            await asyncio.to_thread(self._file.close)
        else:
            await asyncio.to_thread(self._file.flush)


class Side(Protocol):
    """One end of a copy. Errors are the OSError family, naming the path."""

    def join(self, parent: str, name: str) -> str: ...
    def basename(self, path: str) -> str: ...
    async def stat(self, path: str) -> Node: ...  # follows symlinks
    async def children(self, path: str) -> list[tuple[str, Node]]: ...  # name order, not followed
    async def readlink(self, path: str) -> str: ...
    async def open_read(self, path: str) -> Reader: ...
    async def open_write(self, path: str) -> Writer: ...
    async def mkdir(self, path: str) -> None: ...  # fine if a directory is there already
    async def symlink(self, target: str, path: str) -> None: ...  # replaces a symlink there
    async def set_mode(self, path: str, mode: int) -> None: ...


class LocalSide:
    def __init__(self) -> None:
        self._umask = os.umask(0)
        os.umask(self._umask)

    def join(self, parent: str, name: str) -> str:
        return os.path.join(parent, name)

    def basename(self, path: str) -> str:
        return os.path.basename(os.path.abspath(path))  # `put -r . /x` names the directory

    async def stat(self, path: str) -> Node:
        return node_of(os.stat(path))

    async def children(self, path: str) -> list[tuple[str, Node]]:
        def scan() -> list[tuple[str, Node]]:
            with os.scandir(path) as entries:
                return sorted((e.name, node_of(e.stat(follow_symlinks=False))) for e in entries)

        return await asyncio.to_thread(scan)

    async def readlink(self, path: str) -> str:
        return os.readlink(path)

    async def open_read(self, path: str) -> Reader:
        return Stream(await asyncio.to_thread(open, path, "rb", buffering=0))

    async def open_write(self, path: str) -> Writer:
        return Stream(await asyncio.to_thread(open, path, "wb", buffering=0))

    async def mkdir(self, path: str) -> None:
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise

    async def symlink(self, target: str, path: str) -> None:
        if os.path.islink(path):
            os.unlink(path)
        os.symlink(target, path)

    async def set_mode(self, path: str, mode: int) -> None:
        os.chmod(path, mode & ~self._umask)  # a new local file's mode, as cp without -p


class RemoteSide:
    def __init__(self, client: Client) -> None:
        self._fs = client

    def join(self, parent: str, name: str) -> str:
        return remote_join(parent, name)

    def basename(self, path: str) -> str:
        return basename(path)

    async def stat(self, path: str) -> Node:
        return node_of(await self._fs.stat(path))

    async def children(self, path: str) -> list[tuple[str, Node]]:
        return [(name, node_of(st)) for name, st in await self._fs.listdir_attrs(path)]

    async def readlink(self, path: str) -> str:
        return await self._fs.readlink(path)

    async def open_read(self, path: str) -> Reader:
        return await self._fs.open(path, "rb")

    async def open_write(self, path: str) -> Writer:
        return await self._fs.open(path, "wb")

    async def mkdir(self, path: str) -> None:
        try:
            await self._fs.mkdir(path)
        except FileExistsError:
            if kind_of((await self._fs.stat(path)).st_mode) != DIR:
                raise

    async def symlink(self, target: str, path: str) -> None:
        try:
            await self._fs.symlink(target, path)
        except FileExistsError:
            if kind_of((await self._fs.lstat(path)).st_mode) != SYMLINK:
                raise
            await self._fs.remove(path)
            await self._fs.symlink(target, path)

    async def set_mode(self, path: str, mode: int) -> None:
        await self._fs.chmod(path, mode)  # exact: `put` keeps the local bits
