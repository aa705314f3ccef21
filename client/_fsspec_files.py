"""The file objects of `EmberFileSystem.open` (blocking) and `.open_async`.

Both sit on an `EmberFile` opened on the file system's loop:

- reading: one Open at `open()` gives the length; every block fsspec's cache asks for
  is one `pread` of that handle (no lookup of the path per block). A handle whose
  Client was closed (by a fork, or the loop it lived on) is reopened on the next read.
- writing: the file is created (or truncated, or opened for append) at `open()`, so
  "xb" fails then with FileExistsError and "wb" empties the file then, as open(2)
  does; each block fsspec flushes is written to the handle, which sends whole chunks
  in the background; close sends the rest and reports the length. With
  `autocommit=False` (fsspec transactions) the bytes go to a hidden file beside the
  target, renamed over it by `commit()` and removed by `discard()`.

They work through the file system's `LoopClients` (and its `auto_mkdir`), handed to
them by `EmberFileSystem`, so this module does not import fsspec.py.
"""

from __future__ import annotations

import io
import posixpath
import uuid
from typing import Any

from fsspec.asyn import AbstractAsyncStreamedFile, AsyncFileSystem, sync
from fsspec.spec import AbstractBufferedFile

from ._client import Client
from ._file import EmberFile
from ._fsspec_clients import LoopClients

__all__ = ["EmberBufferedFile", "EmberStreamedFile", "ReadHandle", "WriteHandle", "make_parent"]

WRITE_MODES = {"wb": "wb", "xb": "xb", "ab": "ab"}


async def make_parent(clients: LoopClients, path: str) -> None:
    """Create the missing parent directories of path (fsspec's `auto_mkdir`)."""
    parent = posixpath.dirname(path)
    if parent != "/":
        async with clients.call() as client:
            await client.makedirs(parent, exist_ok=True)


class ReadHandle:
    """An open EmberFile for reading, reopened when its Client is no longer current."""

    def __init__(self, clients: LoopClients, path: str) -> None:
        self._clients, self._path = clients, path
        self._client: Client | None = None
        self._file: EmberFile | None = None

    async def open(self) -> int:
        """Open the file; its length."""
        async with self._clients.call() as client:
            return await self._open_with(client)

    async def _open_with(self, client: Client) -> int:
        file = await client.open(self._path, "rb")
        self._client, self._file = client, file
        return await file.seek(0, io.SEEK_END)

    async def pread(self, start: int, end: int) -> bytes:
        async with self._clients.call() as client:
            if client is not self._client or self._file is None:
                await self._open_with(client)
            assert self._file is not None
            return await self._file.pread(start, max(0, end - start))


class WriteHandle:
    """An EmberFile open for writing (holding the Client's write session)."""

    def __init__(self, clients: LoopClients, path: str, mode: str, autocommit: bool, *, auto_mkdir: bool) -> None:
        if mode not in WRITE_MODES:
            raise ValueError(f"invalid mode {mode!r} for writing (wb, xb, ab)")
        self._clients, self.path, self.mode = clients, path, mode
        self.autocommit, self._auto_mkdir = autocommit, auto_mkdir
        # fsspec transactions: write beside the target, rename over it on commit.
        self.target = path
        if not autocommit:
            head, name = posixpath.split(path)
            self.target = posixpath.join(head, f".{name}.emberfs-{uuid.uuid4().hex[:12]}")
        self._file: EmberFile | None = None

    async def open(self) -> int:
        """Create, truncate or open the file; the write position (the length for "ab")."""
        if self._auto_mkdir:
            await make_parent(self._clients, self.target)
        client = await self._clients.open_writer()
        try:
            self._file = await client.open(self.target, WRITE_MODES[self.mode])
        except BaseException:
            self._clients.close_writer()
            raise
        return self._file.tell()

    async def write(self, data: bytes, final: bool) -> None:
        file = self._file
        if file is None:
            raise ValueError("I/O operation on closed file.")
        try:
            await file.write(data)
        except BaseException:
            await self.close()  # end the session; the write's own error is the one to see
            raise
        if final:
            await self.close()

    async def close(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            await file.close()
        finally:
            self._clients.close_writer()

    async def commit(self) -> None:
        if self.target != self.path:
            async with self._clients.call() as client:
                await client.rename(self.target, self.path)

    async def discard(self) -> None:
        if self.target != self.path:
            async with self._clients.call() as client:
                await client.remove(self.target)


class EmberBufferedFile(AbstractBufferedFile):  # type: ignore[misc]
    """A blocking fsspec file over an EmberFile; see the module docstring. `fs` is the
    EmberFileSystem, `clients` and `auto_mkdir` its Clients and option."""

    DEFAULT_BLOCK_SIZE = 4 * 2**20

    def __init__(
        self,
        fs: AsyncFileSystem,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = "default",
        autocommit: bool = True,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        size: int | None = None,
        *,
        clients: LoopClients,
        auto_mkdir: bool,
        **kwargs: Any,
    ) -> None:
        self._reader: ReadHandle | None = None
        self._writer: WriteHandle | None = None
        position = 0
        if mode == "rb":
            self._reader = ReadHandle(clients, path)
            length = sync(fs.loop, self._reader.open)
            size = length if size is None else size
        else:
            self._writer = WriteHandle(clients, path, mode, autocommit, auto_mkdir=auto_mkdir)
            position = sync(fs.loop, self._writer.open)
        super().__init__(fs, path, mode, block_size, autocommit, cache_type, cache_options, size=size, **kwargs)
        self.loc = position

    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self._reader is not None
        return sync(self.fs.loop, self._reader.pread, start, end)  # type: ignore[no-any-return]

    def _initiate_upload(self) -> None:
        pass  # the file was created at open()

    def _upload_chunk(self, final: bool = False) -> bool:
        assert self._writer is not None
        sync(self.fs.loop, self._writer.write, self.buffer.getvalue(), final)
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        if self._writer is not None:
            sync(self.fs.loop, self._writer.commit)

    def discard(self) -> None:
        if self._writer is not None:
            sync(self.fs.loop, self._writer.close)
            sync(self.fs.loop, self._writer.discard)


class EmberStreamedFile(AbstractAsyncStreamedFile):  # type: ignore[misc]
    """An async fsspec file (`await fs.open_async(path)`): no read cache; made by `create`."""

    def __init__(self, fs: AsyncFileSystem, path: str, mode: str, size: int | None, handle: Any) -> None:
        self._handle = handle
        super().__init__(fs, path, mode, block_size="default", autocommit=True, cache_type="none", size=size)

    @classmethod
    async def create(
        cls, fs: AsyncFileSystem, path: str, mode: str, *, clients: LoopClients, auto_mkdir: bool
    ) -> EmberStreamedFile:
        if mode == "rb":
            reader = ReadHandle(clients, path)
            return cls(fs, path, mode, await reader.open(), reader)
        writer = WriteHandle(clients, path, mode, autocommit=True, auto_mkdir=auto_mkdir)
        position = await writer.open()
        # fsspec's async file only flushes in "wb"/"ab"; "xb" did its check at open.
        file = cls(fs, path, "wb" if mode == "xb" else mode, None, writer)
        file.loc = position
        return file

    async def _fetch_range(self, start: int, end: int) -> bytes:
        return await self._handle.pread(start, end)  # type: ignore[no-any-return]

    async def _initiate_upload(self) -> None:
        pass

    async def _upload_chunk(self, final: bool = False) -> bool:
        await self._handle.write(self.buffer.getvalue(), final)
        return True
