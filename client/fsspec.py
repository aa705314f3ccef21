"""`EmberFileSystem`: EmberFS as an fsspec file system, protocol `emberfs`.

    import fsspec, pandas as pd

    fs = fsspec.filesystem("emberfs", host="127.0.0.1", port=9000)
    fs.pipe("/data/a.csv", b"x,y\\n1,2\\n")
    fs.cat_file("/data/a.csv", start=2, end=5)
    df = pd.read_csv("emberfs://127.0.0.1:9000/data/a.csv")

URLs are `emberfs://HOST:PORT/path` (the metaserver's address; several that serve one
cluster as `emberfs://HOST:PORT,HOST:PORT/path`); paths inside the file
system are absolute POSIX paths ("/data/a.csv"). Without a host in the URL, the
`address` option, $EMBERFS_META, or the CLI's default address is used. The protocol is
registered through the `fsspec.specs` entry point, so `fsspec.open("emberfs://...")`,
pandas and pyarrow find it once emberfs is installed.

Every operation is one or a few calls of the async `Client`, on the loop fsspec runs
the file system on (`_fsspec_clients.py`: one lazily connected Client per loop and
process; instances pickle as their address and options; fork-safe). Whole-file and
ranged reads are `read_range`, `cat_ranges` is one `Client.read_ranges` batch (each file
looked up once, pieces sharing a chunk fetched once), `open()` files pread one handle
(`_fsspec_files.py`), a recursive `rm` of a directory is one atomic `rmtree`, and `mv`
of a single path is one atomic `rename`. Writes create missing parent directories
(`auto_mkdir=True`, as object stores behave and fsspec's copy/put suites expect).
Failures are the Client's: the built-in OSError family with the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import posixpath
import stat as _stat
from collections.abc import Iterable, Sequence
from glob import has_magic
from typing import Any

from fsspec.asyn import AsyncFileSystem, get_loop, sync_wrapper
from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.utils import isfilelike

from emberfs.common.errors import InvalidArgument
from emberfs.common.hostports import format_addresses, parse_address_list

from ._fsspec_clients import LoopClients
from ._fsspec_files import EmberBufferedFile, EmberStreamedFile, ReadHandle, WriteHandle, make_parent
from ._fsspec_paths import PREFIX, direct_range, info_dict, join, resolve_range, split_url
from .cli import DEFAULT_META

__all__ = ["EmberFileSystem"]

_COPY_BLOCK = 8 * 2**20  # bytes per step of put/get/cp: a few chunks in flight, bounded memory
_CLIENT_OPTIONS = (
    "uid", "gid", "groups", "umask", "timeout", "retry", "verify_crc",
    "max_inflight", "per_server_inflight", "readahead", "transport", "token", "tls_ca", "attr_timeout",
)  # fmt: skip


class EmberFileSystem(AsyncFileSystem):  # type: ignore[misc]
    """fsspec access to one EmberFS cluster; see the module docstring.

    host/port (or `address="HOST:PORT"`, or "HOST:PORT,HOST:PORT" for several metaservers
    of one cluster) name the metaserver; `auto_mkdir` creates the
    parents of written files; the other keyword options are those of `Client` (uid,
    gid, groups, umask, timeout, retry, verify_crc, max_inflight, per_server_inflight,
    readahead, transport, token, tls_ca, attr_timeout) and of fsspec (asynchronous, loop,
    batch_size, skip_instance_cache).
    """

    protocol = "emberfs"
    root_marker = "/"
    _pid: int  # set by AsyncFileSystem: the process the instance was made in

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        address: str | None = None,
        auto_mkdir: bool = True,
        **options: Any,
    ) -> None:
        client_options = {name: options.pop(name) for name in _CLIENT_OPTIONS if name in options}
        super().__init__(**options)
        if host is not None:
            named = f"[{host}]:{port or 9000}" if ":" in host else f"{host}:{port or 9000}"
            if address is not None and address != named:
                raise ValueError(f"two metaserver addresses: host/port {named} and address {address}")
            address = named
        try:
            addresses = parse_address_list(address or os.environ.get("EMBERFS_META", DEFAULT_META))
        except InvalidArgument as exc:
            raise ValueError(exc.message) from None
        self.address = format_addresses(addresses)
        self.auto_mkdir = auto_mkdir
        self._clients = LoopClients(self.address, client_options)

    def __repr__(self) -> str:
        return f"<EmberFileSystem {self.address}>"

    @property
    def fsid(self) -> str:
        return PREFIX + self.address

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        # fsspec's own property refuses after a fork; its loop is simply made anew in the
        # child (fsspec resets it there), and so are our Clients (LoopClients).
        if self._pid != os.getpid():
            self._pid = os.getpid()
            if not self.asynchronous:
                self._loop = get_loop()
        return self._loop  # type: ignore[no-any-return]

    # -- paths -----------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return split_url(path)[1]

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        from urllib.parse import urlsplit

        address, _ = split_url(path)
        if address is None:
            return {}
        if "," in address:  # several metaservers: no single host/port to name
            try:
                return {"address": format_addresses(parse_address_list(address))}
            except InvalidArgument as exc:
                raise ValueError(f"{path}: {exc.message}") from None
        parts = urlsplit("//" + address)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{path}: an emberfs URL is emberfs://HOST:PORT/path")
        return {"host": parts.hostname, "port": parts.port}

    def unstrip_protocol(self, name: str) -> str:
        return PREFIX + self.address + self._strip_protocol(name)

    async def _ensure_parent(self, path: str) -> None:
        if self.auto_mkdir:
            await make_parent(self._clients, path)

    async def aclose(self) -> None:
        """Close the Client of the running loop (`asynchronous=True` users, before their
        loop ends); the next call connects again."""
        await self._clients.aclose()

    # -- metadata ----------------------------------------------------------------------

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        async with self._clients.call() as client:
            st = await client.lstat(path)
            if not _stat.S_ISLNK(st.st_mode):
                return info_dict(path, st)
            try:
                return info_dict(path, await client.stat(path), islink=True)
            except (FileNotFoundError, NotADirectoryError):
                return info_dict(path, st)  # a dangling link

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        try:
            await self._info(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        async with self._clients.call() as client:
            try:
                entries = await client.listdir_attrs(path)
            except NotADirectoryError:
                info = await self._info(path)
                if info["type"] == "directory":
                    raise
                return [info] if detail else [path]
            if not detail:
                return [join(path, name) for name, _ in entries]
            infos = [info_dict(join(path, name), st) for name, st in entries]
            links = [i for i, info in enumerate(infos) if info["islink"]]
            resolved = await asyncio.gather(*(self._info(infos[i]["name"]) for i in links))
            for i, info in zip(links, resolved, strict=True):
                infos[i] = info
            return infos

    async def _modified(self, path: str) -> datetime.datetime:
        return datetime.datetime.fromtimestamp((await self._info(path))["mtime"], tz=datetime.UTC)

    async def _created(self, path: str) -> datetime.datetime:
        return datetime.datetime.fromtimestamp((await self._info(path))["created"], tz=datetime.UTC)

    modified = sync_wrapper(_modified)
    created = sync_wrapper(_created)

    # -- directories and names ---------------------------------------------------------

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        async with self._clients.call() as client:
            if create_parents:
                await client.makedirs(path, exist_ok=False)
            else:
                await client.mkdir(path)

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        async with self._clients.call() as client:
            await client.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    async def _rmdir(self, path: str) -> None:
        async with self._clients.call() as client:
            await client.rmdir(self._strip_protocol(path))

    rmdir = sync_wrapper(_rmdir)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        async with self._clients.call() as client:
            await client.remove(self._strip_protocol(path))

    async def _rm(
        self,
        path: str | list[str],
        recursive: bool = False,
        maxdepth: int | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Files one by one (concurrently); with `recursive`, a directory named as such
        goes in one atomic rmtree, and directories found by a glob or a depth-bounded
        walk are removed deepest first once emptied (a non-empty one: ENOTEMPTY)."""
        if recursive and maxdepth is None and isinstance(path, str) and not has_magic(path):
            one = self._strip_protocol(path)
            if await self._isdir(one):
                async with self._clients.call() as client:
                    await client.rmtree(one)
                return
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        removed = await asyncio.gather(*(self._rm_file(p) for p in paths), return_exceptions=True)
        directories = []
        for p, outcome in zip(paths, removed, strict=True):
            if isinstance(outcome, IsADirectoryError) and recursive:
                directories.append(p)
            elif isinstance(outcome, BaseException):
                raise outcome
        for directory in sorted(directories, key=lambda d: d.count("/"), reverse=True):
            await self._rmdir(directory)

    async def _mv(
        self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any
    ) -> None:
        """One atomic rename for one path (into path2 when it is a directory, as `mv`
        does); globs and lists are copied and removed, as fsspec's default."""
        if isinstance(path1, str) and isinstance(path2, str) and not has_magic(path1):
            src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
            if src == dst:
                return
            if path2.endswith("/") or await self._isdir(dst):
                dst = join(dst, posixpath.basename(src))
            await self._ensure_parent(dst)
            async with self._clients.call() as client:
                await client.rename(src, dst)
            return
        await self._copy(path1, path2, recursive=recursive, maxdepth=maxdepth, on_error="raise")
        await self._rm(path1, recursive=recursive)

    mv = sync_wrapper(_mv)

    async def _mv_file(self, path1: str, path2: str) -> None:
        await self._mv(path1, path2)

    async def _touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        """truncate: make path an empty file; otherwise create it empty if missing and
        set its times to now (touch(1))."""
        path = self._strip_protocol(path)
        if truncate:
            await self._pipe_file(path, b"")
            return
        await self._ensure_parent(path)
        async with self._clients.call() as client:
            await client.touch(path)

    touch = sync_wrapper(_touch)

    # -- reading -----------------------------------------------------------------------

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        span = direct_range(start, end)
        if span is None:
            span = resolve_range(start, end, (await self._info(path))["size"])
        async with self._clients.call() as client:
            return await client.read_range(path, *span)

    async def _cat_ranges(
        self,
        paths: list[str],
        starts: int | None | Sequence[int | None],
        ends: int | None | Sequence[int | None],
        max_gap: int | None = None,
        batch_size: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """All ranges in one `Client.read_ranges` batch (which coalesces pieces of one
        chunk itself, so `max_gap` is not needed). If the batch fails, each range is
        read alone, so that one missing file costs only its own ranges (`on_error`)."""
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        starts = list(starts) if isinstance(starts, Iterable) else [starts] * len(paths)
        ends = list(ends) if isinstance(ends, Iterable) else [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError("paths, starts and ends must have the same length")
        paths = [self._strip_protocol(p) for p in paths]
        try:
            spans = [direct_range(s, e) for s, e in zip(starts, ends, strict=True)]
            need_size = sorted({p for p, span in zip(paths, spans, strict=True) if span is None})
            sizes = dict(zip(need_size, await asyncio.gather(*(self._size(p) for p in need_size)), strict=True))
            ranges = [
                (p, *(span if span is not None else resolve_range(s, e, sizes[p])))
                for p, s, e, span in zip(paths, starts, ends, spans, strict=True)
            ]
            async with self._clients.call() as client:
                return list(await client.read_ranges(ranges))
        except (ConnectionError, TimeoutError):
            raise  # every range would fail the same way, each after its own wait
        except OSError:
            pass
        out = await asyncio.gather(
            *(self._cat_file(p, s, e) for p, s, e in zip(paths, starts, ends, strict=True)), return_exceptions=True
        )
        if on_error != "return":
            for outcome in out:
                if isinstance(outcome, BaseException):
                    raise outcome
        return list(out)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> EmberBufferedFile:
        return EmberBufferedFile(
            self, self._strip_protocol(path), mode, block_size, autocommit, cache_options=cache_options,
            clients=self._clients, auto_mkdir=self.auto_mkdir, **kwargs,
        )

    async def open_async(self, path: str, mode: str = "rb", **kwargs: Any) -> EmberStreamedFile:
        if "b" not in mode or kwargs.get("compression"):
            raise ValueError("open_async: binary modes only, no compression")
        return await EmberStreamedFile.create(
            self, self._strip_protocol(path), mode, clients=self._clients, auto_mkdir=self.auto_mkdir
        )

    # -- writing and copying -----------------------------------------------------------

    def _writer(self, path: str, mode: str) -> WriteHandle:
        return WriteHandle(self._clients, path, mode, True, auto_mkdir=self.auto_mkdir)

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        writer = self._writer(self._strip_protocol(path), "xb" if mode == "create" else "wb")
        await writer.open()
        await writer.write(bytes(value), final=True)

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        reader = ReadHandle(self._clients, src)
        try:
            size = await reader.open()
        except IsADirectoryError:
            await self._makedirs(dst, exist_ok=True)
            return
        writer = self._writer(dst, "wb")
        await writer.open()
        try:
            for offset in range(0, size, _COPY_BLOCK):
                await writer.write(await reader.pread(offset, offset + _COPY_BLOCK), final=False)
        finally:
            await writer.close()

    async def _put_file(
        self, lpath: str, rpath: str, callback: Callback = DEFAULT_CALLBACK, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            await self._makedirs(rpath, exist_ok=True)
            return
        writer = self._writer(rpath, "xb" if mode == "create" else "wb")
        with open(lpath, "rb") as local:
            callback.set_size(os.fstat(local.fileno()).st_size)
            await writer.open()
            try:
                while block := await asyncio.to_thread(local.read, _COPY_BLOCK):
                    await writer.write(block, final=False)
                    callback.relative_update(len(block))
            finally:
                await writer.close()

    async def _get_file(
        self, rpath: str, lpath: Any, callback: Callback = DEFAULT_CALLBACK, **kwargs: Any
    ) -> None:
        reader = ReadHandle(self._clients, self._strip_protocol(rpath))
        try:
            size = await reader.open()
        except IsADirectoryError:
            if not isfilelike(lpath):
                os.makedirs(lpath, exist_ok=True)
            return
        callback.set_size(size)
        with contextlib.ExitStack() as owned:  # closes the local file if we opened it, not a caller's
            local = lpath if isfilelike(lpath) else owned.enter_context(open(lpath, "wb"))
            ahead: asyncio.Future[bytes] | None = None
            try:
                # One block is fetched while the one before it is written out.
                ahead = asyncio.ensure_future(reader.pread(0, _COPY_BLOCK))
                for offset in range(0, size, _COPY_BLOCK):
                    block = await ahead
                    if offset + _COPY_BLOCK < size:
                        ahead = asyncio.ensure_future(reader.pread(offset + _COPY_BLOCK, offset + 2 * _COPY_BLOCK))
                    await asyncio.to_thread(local.write, block)
                    callback.relative_update(len(block))
            finally:
                if ahead is not None and not ahead.done():
                    ahead.cancel()
