"""`Client`: the public async entry point to an EmberFS cluster.

Each namespace method builds one Meta request and hands it to the metaserver
transport (`_meta.py`), which owns headers, deadlines, retries and the translation
of every failure into the built-in OSError family. The methods here only shape
arguments (umask, optional attributes, paging) and results (`StatResult`).
Chunk I/O (`read_file`, `write_file`) goes through the data path (`_datapath.py`) over
the storage transports (`common/storagepool.py`), routed by the cached cluster routing
(`_routing.py`, fetched from the metaserver's Mgmt service through the same transport).
Reads by path look the file up through the attribute cache (`_attrcache.py`); every
method that changes the namespace or a file tells it what changed.

State is explicit: UNOPENED -> OPENED (`connect()` / `async with`) -> CLOSED. A closed
client cannot be reopened; make a new one.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from google.protobuf.message import Message

from emberfs.common.auth import token_from_env
from emberfs.common.tls import check_ca, tls_ca_from_env
from emberfs.common.errors import EmberError, Internal, InvalidArgument, IsADirectory, NotFound, PermissionDenied
from emberfs.common.hostports import format_addresses, parse_address_list
from emberfs.common.paths import check_mode
from emberfs.common.layout import ChunkSpan, chunk_span
from emberfs.common.storagepool import StoragePool
from emberfs.proto import common_pb2, meta_pb2, mgmt_pb2

from ._attrcache import DEFAULT_ATTR_TIMEOUT, AttrCache, Change
from ._caps import CapabilityCache
from ._datapath import DataPath, FileLayout, FileSpans, bounded_all
from ._errors import os_error
from ._file import EmberFile
from ._filehost import FileAttrs, OpenedFile
from ._freshbytes import fresh_bytes
from ._meta import Identity, MetaTransport, metaservers_at
from ._plan import FileReads, read_plan, result_sizes
from ._retry import RetryPolicy
from ._routing import RoutingCache
from ._stat import StatFsResult, StatResult, stat_from_inode, statfs_from_response

__all__ = ["Client", "ClientState"]

_NS_PER_S = 1_000_000_000
_MAX_ID = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 is (uid_t)-1, "no change"
_LIST_PAGE = 1000  # entries per List call; the server may cap it lower

T = TypeVar("T")


# read(attrs, file, zero_filled): one read of a file looked up by path (`_read_by_path`)
PathRead = Callable[[FileAttrs, FileLayout, "list[int] | None"], Awaitable[T]]


def _check_range(path: str, offset: int, length: int) -> None:
    """pread(2)'s rule: a negative offset or length is EINVAL, naming the file."""
    if offset < 0 or length < 0:
        raise os_error(InvalidArgument(f"negative offset or length ({offset}, {length})"), path)


def _list_page(
    path: str, start_after: str, with_attrs: bool
) -> Callable[[common_pb2.RequestHeader], meta_pb2.ListRequest]:
    """The List request of one page, its cursor fixed: each retry asks for the same page."""
    return lambda h: meta_pb2.ListRequest(
        header=h, path=path, start_after=start_after, limit=_LIST_PAGE, with_attrs=with_attrs
    )


class _RangesRead:
    """The reads of one file's (path, offset, length) ranges in a `read_ranges` batch:
    its chunk reads (`plan`), its results cut from what they returned (`results`), and
    the whole read again as a `PathRead` (a re-read after a stale cached lookup)."""

    def __init__(self, datapath: DataPath, ranges: list[tuple[str, int, int]]) -> None:
        self._datapath, self._ranges = datapath, ranges
        self._path = ranges[0][0]

    def plan(self, attrs: FileAttrs, file: FileLayout, zero_filled: list[int] | None) -> tuple[FileReads, FileSpans]:
        (plan,) = read_plan(self._ranges, {self._path: attrs.length}, {self._path: file.chunk_size})
        return plan, FileSpans(file, [ChunkSpan(r.chunk_index, r.offset, r.length) for r in plan.reads], zero_filled)

    def results(self, attrs: FileAttrs, plan: FileReads, chunks: Sequence[Any]) -> list[bytes]:
        # Large results are filled in the bytes returned (_freshbytes.py), small ones joined.
        results_of = [fresh_bytes(n) or (None, memoryview(bytearray(n)))
                      for n in result_sizes(self._ranges, {self._path: attrs.length})]
        for r, data in zip(plan.reads, chunks, strict=True):
            source = memoryview(data)  # slices of a view copy nothing
            for piece in r.pieces:
                results_of[plan.range_indexes[piece.range_index]][1][
                    piece.range_offset : piece.range_offset + piece.length
                ] = source[piece.read_offset : piece.read_offset + piece.length]
        return [result if result is not None else bytes(view) for result, view in results_of]

    async def __call__(self, attrs: FileAttrs, file: FileLayout, zero_filled: list[int] | None) -> list[bytes]:
        plan, spans = self.plan(attrs, file, zero_filled)
        return self.results(attrs, plan, await self._datapath.read_batch(file, spans.spans, zero_filled))


class ClientState(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class Client:
    """An async EmberFS client: `async with Client("127.0.0.1:9000") as fs: ...`.

    `address`: the metaserver, "HOST:PORT", or several that serve one cluster,
    "HOST:PORT,HOST:PORT" (or a sequence of HOST:PORT): a metaserver that does not
    answer hands the call to the next one with the same request id (`_meta.py`).

    uid, gid and groups are the identity the metaserver checks POSIX permissions
    against (default: this process's). `umask` is applied by the client to the mode
    of every new file and directory, as the kernel does for local files; the server
    stores modes as given. `timeout` bounds one call, retries included.

    Data path: `verify_crc` checks every chunk read against its CRC32C; at most
    `max_inflight` chunk requests are in flight (`per_server_inflight` to one storage
    server); a sequential reader of `open()` prefetches `readahead` bytes ahead.
    `transport`: "bulk" (default) moves chunk data on the storage servers' bulk
    channel where they offer one, gRPC otherwise; "grpc" keeps it all on gRPC.

    `token`: the secret a cluster with tokens requires (default: $EMBERFS_TOKEN; none
    if unset). With a user token the servers use the token's uid/gid/groups, not the
    ones given here; with an admin token they use the ones given here.

    `tls_ca`: the PEM path of the CA that signed the servers' certificates, for a
    cluster serving TLS (default: $EMBERFS_TLS_CA; plaintext if unset). Both transports
    then use TLS and verify each server's certificate and name.

    `attr_timeout`: seconds a read by path (`read_file`, `read_range`, `read_into`,
    `read_ranges`) may reuse what an earlier Open of that path answered (inode, layout,
    length) instead of asking the metaserver again; 0 asks every time. Close-to-open:
    `open()` always asks, this client's own changes are seen at once, another client's
    at its next `open()` of the path or after `attr_timeout` (`_attrcache.py`).
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        uid: int | None = None,
        gid: int | None = None,
        groups: Sequence[int] | None = None,
        umask: int = 0o022,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        verify_crc: bool = True,
        max_inflight: int = 64,
        per_server_inflight: int = 16,
        readahead: int = 8 * 2**20,
        transport: str = "bulk",
        token: str | None = None,
        tls_ca: str | None = None,
        attr_timeout: float = DEFAULT_ATTR_TIMEOUT,
    ) -> None:
        if not 0 <= umask <= 0o777:
            raise ValueError(f"umask {umask:#o} is outside 0..0o777")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if readahead < 0:
            raise ValueError("readahead must not be negative")
        if transport not in ("bulk", "grpc"):
            raise ValueError(f"transport must be 'bulk' or 'grpc', not {transport!r}")
        if token is not None and not (token and all("!" <= c <= "~" for c in token)):
            raise ValueError("token must be non-empty printable ASCII without spaces")
        try:
            addresses = parse_address_list(address)
        except InvalidArgument as exc:
            raise ValueError(exc.message) from None
        self.address = format_addresses(addresses)
        self.umask = umask
        self.identity = Identity(
            uid=os.getuid() if uid is None else uid,
            gid=os.getgid() if gid is None else gid,
            groups=tuple(os.getgroups() if groups is None else groups),
        )
        self.state = ClientState.UNOPENED
        retry = retry or RetryPolicy()
        token = token if token is not None else token_from_env()
        tls_ca = tls_ca if tls_ca is not None else tls_ca_from_env()
        if tls_ca:
            check_ca(tls_ca)  # TlsError (a ValueError) now, not a failed handshake later
        self._meta = MetaTransport(addresses, self.identity, timeout=timeout, retry=retry, token=token,
                                   tls_ca=tls_ca)
        self._routing = RoutingCache(self._fetch_routing)
        self._storage = StoragePool(bulk=transport == "bulk", token=token, tls_ca=tls_ca)
        self.readahead = readahead
        self._caps = CapabilityCache(self._fetch_capability)
        self._attrs: AttrCache[OpenedFile] = AttrCache(attr_timeout)
        self._datapath = DataPath(
            self._routing,
            self._storage,
            self._meta.header,
            self._caps,
            retry=retry,
            timeout=timeout,
            verify_crc=verify_crc,
            max_inflight=max_inflight,
            per_server=per_server_inflight,
        )

    def __repr__(self) -> str:
        return f"<Client {self.address} uid={self.identity.uid} {self.state.value}>"

    # -- lifecycle ---------------------------------------------------------------

    async def connect(self, *, wait: float | None = None) -> None:
        """Open the client (what `async with` does); `aclose()` ends it.

        wait: also wait up to this many seconds for the metaserver to answer, and raise
        ConnectionError if it does not (an interactive tool's fast failure; calls
        themselves wait for an unreachable metaserver up to their timeout)."""
        if self.state is not ClientState.UNOPENED:
            raise RuntimeError(f"cannot open a client that is {self.state.value}")
        await self._meta.open()
        self.state = ClientState.OPENED
        if wait is not None:
            try:
                await self._meta.wait_ready(wait)
            except TimeoutError:
                await self.aclose()
                raise ConnectionError(f"cannot reach {metaservers_at(self.address)} within {wait:g} s") from None

    async def aclose(self) -> None:
        if self.state is ClientState.OPENED:
            await self._storage.close()
            await self._meta.close()
        self.state = ClientState.CLOSED

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        build: Callable[[common_pb2.RequestHeader], Message],
        *,
        path: str | None,
        path2: str | None = None,
    ) -> Any:
        if self.state is not ClientState.OPENED:
            raise RuntimeError(f"the client is {self.state.value}; use `async with Client(...)`")
        return await self._meta.call(method, build, path=path, path2=path2)

    async def _fetch_routing(self, known_version: int) -> mgmt_pb2.GetRoutingResponse:
        return await self._meta.call(
            "GetRouting",
            lambda h: mgmt_pb2.GetRoutingRequest(header=h, known_version=known_version, accept_delta=True),
            path=None,
            service="mgmt",
        )

    async def routing(self) -> mgmt_pb2.RoutingInfo:
        """The cluster manager's current routing (nodes, targets, chains)."""
        if self.state is not ClientState.OPENED:
            raise RuntimeError(f"the client is {self.state.value}; use `async with Client(...)`")
        return (await self._routing.refresh()).proto

    @property
    def manager_address(self) -> str:
        """The metaserver that answered the last cluster-manager call: the primary, once a
        call succeeded (with one address, that address)."""
        return self._meta.answering[1]

    async def init_chains(self, replicas: int, chains: int = 0) -> mgmt_pb2.InitChainsResponse:
        """Create the chain table (idempotent: created=False when it existed)."""
        return await self._call_mgmt(
            "InitChains", lambda h: mgmt_pb2.InitChainsRequest(header=h, replicas=replicas, chains=chains)
        )

    async def _call_mgmt(self, method: str, build: Callable[[common_pb2.RequestHeader], Message]) -> Any:
        if self.state is not ClientState.OPENED:
            raise RuntimeError(f"the client is {self.state.value}; use `async with Client(...)`")
        return await self._meta.call(method, build, path=None, service="mgmt")

    # -- file data -----------------------------------------------------------------

    async def _file(self, path: str) -> tuple[meta_pb2.Inode, FileLayout]:
        """The regular file at path (following symlinks) and its chunk layout."""
        resp = await self._call("Stat", lambda h: meta_pb2.StatRequest(header=h, path=path), path=path)
        inode = resp.inode
        if inode.type == meta_pb2.DIRECTORY:
            raise os_error(IsADirectory(f"{path} is a directory"), path)
        return inode, FileLayout(inode.inode_id, inode.layout)

    async def _open_read(self, path: str, *, fresh: bool = False) -> OpenedFile:
        """The regular file at path, opened for reading: the metaserver checks read
        permission and hands out the read capability the storage servers ask for.
        From the attribute cache while its entry lasts, unless `fresh` (an open())."""
        if fresh:
            return await self._attrs.refresh(path, functools.partial(self._send_open_read, path))
        return (await self._attrs.lookup(path, functools.partial(self._send_open_read, path)))[0]

    async def _send_open_read(self, path: str) -> tuple[OpenedFile, int]:
        resp = await self._call("Open", lambda h: meta_pb2.OpenRequest(header=h, path=path, write=False), path=path)
        inode = resp.inode
        self._caps.offer(inode.inode_id, resp.capability)
        attrs = FileAttrs(inode.inode_id, inode.length, inode.truncate_version)
        return (attrs, FileLayout(inode.inode_id, inode.layout)), inode.inode_id

    async def _read_by_path(self, path: str, read: PathRead[T]) -> T:
        """read(inode, file, zero_filled) on the file at path, looked up through the
        attribute cache (what a cached answer may hide: `_settle_cached`)."""
        (inode, file), cached = await self._attrs.lookup(path, functools.partial(self._send_open_read, path))
        if not cached:
            return await self._data_call(path, read(inode, file, None))
        zero_filled: list[int] = []
        try:
            result: T | EmberError = await read(inode, file, zero_filled)
        except EmberError as exc:
            result = exc
        return await self._settle_cached(path, inode, read, result, zero_filled)

    async def _settle_cached(self, path: str, inode: FileAttrs, read: PathRead[T], result: T | EmberError,
                             zero_filled: list[int]) -> T:
        """What a read made from a cached lookup of path (`inode`) comes to.

        A cached answer can be stale (another client removed, replaced, truncated or
        chmod-ed the file). When the read failed as if the file were gone or refused, the
        entry is dropped and the read runs once more on a fresh Open. When it found fewer
        bytes than the cached length promised (`zero_filled`: holes read as zeros; the
        file may have shrunk, or its chunks been collected), the path is asked again: the
        same file (inode, length, truncate version) keeps what was read, another one is
        read again."""
        if isinstance(result, EmberError):
            if not isinstance(result, (NotFound, PermissionDenied)):
                raise os_error(result, path) from None
            self._attrs.drop(path)
            inode, file = await self._open_read(path, fresh=True)
            return await self._data_call(path, read(inode, file, None))
        if not zero_filled:
            return result
        self._attrs.drop(path)
        now, file = await self._open_read(path, fresh=True)
        if now == inode:
            return result  # a sparse file: the zeros are its own
        return await self._data_call(path, read(now, file, None))

    async def _fetch_capability(self, inode_id: int, write: bool) -> meta_pb2.Capability:
        """A fresh capability for an inode this client opened (the cache renews with it)."""
        if self.state is not ClientState.OPENED:
            raise RuntimeError(f"the client is {self.state.value}; use `async with Client(...)`")
        request = meta_pb2.GetCapabilityRequest(header=self._meta.header(), inode_id=inode_id, write=write)
        return (await self._meta.send("GetCapability", request)).capability

    async def _data_call(self, path: str, work: Awaitable[T]) -> T:
        """Run chunk I/O for path; its failures leave as the OSError family, with path."""
        try:
            return await work
        except EmberError as exc:
            raise self._data_error(path, exc) from None

    def _data_error(self, path: str, exc: EmberError) -> OSError:
        """A chunk I/O failure for path as an OSError; a file gone or refused also drops
        path's cached attributes."""
        if isinstance(exc, (NotFound, PermissionDenied)):
            self._attrs.drop(path)
        return os_error(exc, path)

    async def _read_bytes(self, file: FileLayout, spans: Sequence[ChunkSpan],
                          zero_filled: list[int] | None = None) -> bytes:
        """The spans' bytes as one new bytes object. A large read's chunks are received
        straight into it (`_freshbytes.py`: one copy, no join); a small one is joined
        from the bytes it arrived in. EmberError leaves as itself."""
        fresh = fresh_bytes(sum(span.length for span in spans))
        if fresh is None:
            return b"".join(await self._datapath.read_spans(file, spans, zero_filled))
        result, view = fresh
        await self._datapath.read_spans_into(file, spans, view, zero_filled)
        return result

    async def read_file(self, path: str) -> bytes:
        """The whole contents of the file at path."""

        async def read(inode: FileAttrs, file: FileLayout, zero_filled: list[int] | None) -> bytes:
            spans = chunk_span(0, inode.length, file.chunk_size, inode.length)
            return await self._read_bytes(file, spans, zero_filled)

        return await self._read_by_path(path, read)

    async def read_into(self, path: str, buffer: Any, offset: int = 0) -> int:
        """Fill `buffer` (any writable buffer) with the file's bytes from `offset`; return
        how many (short at EOF, like os.preadv). Chunk payloads land in the buffer
        itself: the way to read large data without a copy or a join."""
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("read_into needs a writable buffer")
        _check_range(path, offset, len(view))

        async def read(inode: FileAttrs, file: FileLayout, zero_filled: list[int] | None) -> int:
            spans = chunk_span(offset, len(view), file.chunk_size, inode.length)
            n = sum(span.length for span in spans)
            await self._datapath.read_spans_into(file, spans, view[:n], zero_filled)
            return n

        return await self._read_by_path(path, read)

    async def read_range(self, path: str, offset: int, length: int) -> bytes:
        """`length` bytes of the file from `offset`: short at EOF, empty past it (os.pread)."""
        _check_range(path, offset, length)

        async def read(inode: FileAttrs, file: FileLayout, zero_filled: list[int] | None) -> bytes:
            spans = chunk_span(offset, length, file.chunk_size, inode.length)
            return await self._read_bytes(file, spans, zero_filled)

        return await self._read_by_path(path, read)

    async def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Many (path, offset, length) reads in one call, results in request order.

        Every file is looked up first (through the attribute cache, concurrently: one Open
        per file missing from it); then pieces of the ranges that share a chunk are
        fetched by one chunk read, and on the bulk channel the small chunk reads of all
        the files that lie on one chain travel together in one READVM
        (`DataPath.read_files`). A file that fails raises for the whole call (OSError with
        its path); one whose cached answer was stale is looked up and read again alone.
        """
        ranges = [(path, int(offset), int(length)) for path, offset, length in ranges]
        for path, offset, length in ranges:
            _check_range(path, offset, length)
        by_path: dict[str, list[int]] = {}
        for index, (path, _, _) in enumerate(ranges):
            by_path.setdefault(path, []).append(index)
        looked = await bounded_all(
            [functools.partial(self._attrs.lookup, p, functools.partial(self._send_open_read, p)) for p in by_path],
            self._datapath.max_inflight)
        files = []  # (path, its indexes, attrs, cached, its read, its plan, its spans)
        for (path, indexes), ((attrs, layout), cached) in zip(by_path.items(), looked, strict=True):
            read = _RangesRead(self._datapath, [ranges[i] for i in indexes])
            files.append((path, indexes, attrs, cached, read, *read.plan(attrs, layout, [] if cached else None)))
        outcomes = await self._datapath.read_files([spans for *_, spans in files])
        out: list[bytes] = [b""] * len(ranges)

        async def settle(path: str, indexes: list[int], attrs: FileAttrs, cached: bool, read: _RangesRead,
                         plan: FileReads, spans: FileSpans, outcome: list[Any] | EmberError) -> None:
            result = outcome if isinstance(outcome, EmberError) else read.results(attrs, plan, outcome)
            if cached:
                result = await self._settle_cached(path, attrs, read, result, spans.zero_filled or [])
            elif isinstance(result, EmberError):
                raise self._data_error(path, result) from None
            for i, data in zip(indexes, result, strict=True):
                out[i] = data

        await bounded_all([functools.partial(settle, *file, outcome) for file, outcome in zip(files, outcomes,
                                                                                            strict=True)],
                          self._datapath.max_inflight)
        return out

    async def write_file(self, path: str, data: bytes | bytearray | memoryview, mode: int = 0o666) -> None:
        """Create or replace the file at path with `data` (an `open(path, "wb")` write)."""
        async with EmberFile(self, path, "wb", perm=mode) as file:
            await file.write(data)

    def open(self, path: str, mode: str = "rb") -> EmberFile:
        """A file object for path: `async with fs.open(p, "rb") as f` or `f = await fs.open(p)`.

        Modes: "rb", "wb" (create or truncate), "xb" (create; FileExistsError if it
        exists), "ab" (append), "r+b" (read and write an existing file). Opening always
        asks the metaserver, whatever `attr_timeout` (close-to-open).
        """
        if self.state is not ClientState.OPENED:
            raise RuntimeError(f"the client is {self.state.value}; use `async with Client(...)`")
        return EmberFile(self, path, mode)

    async def _report_length(
        self,
        method: str,
        path: str,
        session_id: int,
        inode_id: int,
        length: int,
        truncate_version: int,
        *,
        wrote: bool,
    ) -> meta_pb2.SyncResponse | meta_pb2.CloseResponse:
        """A write session's length report: method "Sync" or "Close" (session.py's rule)."""
        request_type = meta_pb2.SyncRequest if method == "Sync" else meta_pb2.CloseRequest
        try:
            return await self._call(
                method,
                lambda h: request_type(
                    header=h, session_id=session_id, inode_id=inode_id, length=length, wrote=wrote,
                    truncate_version=truncate_version,
                ),
                path=path,
            )
        finally:  # a failed report may still have landed
            self._attrs.changed(Change.FILE_CHANGED, path, inode_id)

    # -- attributes ----------------------------------------------------------------

    async def stat(self, path: str, *, follow_symlinks: bool = True) -> StatResult:
        resp = await self._call(
            "Stat",
            lambda h: meta_pb2.StatRequest(header=h, path=path, follow_symlinks=follow_symlinks),
            path=path,
        )
        return stat_from_inode(resp.inode)

    async def lstat(self, path: str) -> StatResult:
        return await self.stat(path, follow_symlinks=False)

    async def exists(self, path: str) -> bool:
        """True if path names something (following symlinks), as os.path.exists: a
        missing entry, or a path through a non-directory, is False; other errors raise."""
        try:
            await self.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    async def chmod(self, path: str, mode: int, *, follow_symlinks: bool = True) -> None:
        await self._setattr(path, follow_symlinks, mode=mode)

    async def chown(self, path: str, uid: int, gid: int, *, follow_symlinks: bool = True) -> None:
        """Change owner and group; -1 leaves either unchanged (as os.chown)."""
        ids = {name: value for name, value in (("uid", uid), ("gid", gid)) if value != -1}
        await self._setattr(path, follow_symlinks, **ids)

    async def utime(
        self,
        path: str,
        times: tuple[float, float] | None = None,
        *,
        ns: tuple[int, int] | None = None,
        follow_symlinks: bool = True,
    ) -> None:
        """Set (atime, mtime) in seconds or nanoseconds; neither: now, by the server's clock."""
        if times is not None and ns is not None:
            raise ValueError("utime: give either times or ns, not both")
        if times is not None:
            ns = (int(times[0] * _NS_PER_S), int(times[1] * _NS_PER_S))
        if ns is None:
            await self._setattr(path, follow_symlinks, times_now=True)
        else:
            await self._setattr(path, follow_symlinks, atime_ns=ns[0], mtime_ns=ns[1])

    async def _setattr(self, path: str, follow_symlinks: bool, **fields: Any) -> StatResult:
        def build(h: common_pb2.RequestHeader) -> meta_pb2.SetAttrRequest:
            # Inside the transport's boundary, so a bad mode is OSError(EINVAL) with the path.
            if "mode" in fields:
                check_mode(fields["mode"])
            for name in ("uid", "gid"):
                if not 0 <= fields.get(name, 0) <= _MAX_ID:
                    raise InvalidArgument(f"{name} {fields[name]} is outside 0..{_MAX_ID}")
            return meta_pb2.SetAttrRequest(header=h, path=path, follow_symlinks=follow_symlinks, **fields)

        try:
            resp = await self._call("SetAttr", build, path=path)
        except BaseException:
            self._attrs.changed(Change.DIR_CHANGED, path)  # it may have landed, on a directory
            raise
        is_dir = resp.inode.type == meta_pb2.DIRECTORY
        self._attrs.changed(Change.DIR_CHANGED if is_dir else Change.FILE_CHANGED, path, resp.inode.inode_id)
        return stat_from_inode(resp.inode)

    async def truncate(self, path: str, length: int) -> None:
        """Set the file's length (os.truncate): shrinking drops the bytes past it on
        the storage servers too, so growing the file again reads zeros there.

        The metaserver first (it checks permissions and the file type, and answers the
        length it had just before, read in the same transaction); then storage, up to
        the larger of that and what storage holds (`DataPath.truncate`)."""

        def build(h: common_pb2.RequestHeader) -> meta_pb2.TruncateRequest:
            if length < 0:
                raise InvalidArgument(f"negative length {length}")
            return meta_pb2.TruncateRequest(header=h, path=path, length=length)

        inode_id = None
        try:
            resp = await self._call("Truncate", build, path=path)
            inode_id = resp.inode.inode_id
            # The metaserver checks permissions and the file type and grants the write
            # capability for cutting the chunks.
            self._caps.offer(inode_id, resp.capability)
            file = FileLayout(inode_id, resp.inode.layout)
            if file.chain_ids:
                await self._data_call(path, self._datapath.truncate(file, resp.old_length, length))
        finally:  # after the bytes changed too; a failed call may still have landed
            self._attrs.changed(Change.FILE_CHANGED, path, inode_id)

    async def statfs(self) -> StatFsResult:
        resp = await self._call("StatFs", lambda h: meta_pb2.StatFsRequest(header=h), path=None)
        return statfs_from_response(resp)

    # -- directories -----------------------------------------------------------------

    async def listdir(self, path: str) -> list[str]:
        """Names in the directory, sorted (bytewise UTF-8, as the server orders them)."""
        return [entry.name async for entry in self._list(path, with_attrs=False)]

    async def listdir_attrs(self, path: str) -> list[tuple[str, StatResult]]:
        """(name, StatResult) for each entry, sorted by name; symlinks are not followed."""
        return [(e.name, stat_from_inode(e.inode)) async for e in self._list(path, with_attrs=True)]

    async def _list(self, path: str, *, with_attrs: bool) -> AsyncIterator[meta_pb2.DirEntry]:
        start_after = ""
        while True:
            resp = await self._call(
                "List",
                _list_page(path, start_after, with_attrs),
                path=path,
            )
            for entry in resp.entries:
                yield entry
            if not resp.more:
                return
            if not resp.entries:
                # "more" with an empty page would page forever from the same cursor.
                raise os_error(Internal("List returned more=true with no entries"), path)
            start_after = resp.entries[-1].name

    async def mkdir(self, path: str, mode: int = 0o777) -> None:
        await self._mkdir(path, mode, parents=False, exist_ok=False)

    async def makedirs(self, path: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        """mkdir -p: create path and its missing ancestors (all with `mode`, after umask)."""
        await self._mkdir(path, mode, parents=True, exist_ok=exist_ok)

    async def _mkdir(self, path: str, mode: int, *, parents: bool, exist_ok: bool) -> None:
        try:
            await self._call(
                "Mkdir",
                lambda h: meta_pb2.MkdirRequest(
                    header=h, path=path, mode=self._dir_mode(mode), parents=parents, exist_ok=exist_ok
                ),
                path=path,
            )
        finally:
            self._attrs.changed(Change.NEW_NAME, path)

    async def rmdir(self, path: str) -> None:
        await self._remove(path, meta_pb2.EMPTY_DIRECTORY)

    async def remove(self, path: str) -> None:
        """Unlink a file or symlink; a directory raises IsADirectoryError."""
        await self._remove(path, meta_pb2.NON_DIRECTORY)

    async def rmtree(self, path: str) -> None:
        """Remove a directory and everything under it (or a single file), atomically."""
        await self._remove(path, meta_pb2.RECURSIVE)

    async def _remove(self, path: str, kind: meta_pb2.RemoveKind) -> int:
        try:
            resp = await self._call(
                "Remove", lambda h: meta_pb2.RemoveRequest(header=h, path=path, kind=kind), path=path
            )
        finally:
            self._attrs.changed(Change.NAME_GONE, path)
        return int(resp.removed)

    # -- names -----------------------------------------------------------------------

    async def rename(self, src: str, dst: str) -> None:
        """Atomically move src to dst, replacing dst as POSIX rename(2) allows."""
        try:
            await self._call(
                "Rename", lambda h: meta_pb2.RenameRequest(header=h, src=src, dst=dst), path=src, path2=dst
            )
        finally:
            self._attrs.changed(Change.NAME_GONE, src)

    async def touch(self, path: str, mode: int = 0o666, exist_ok: bool = True) -> None:
        """Create an empty file if path is missing; otherwise set its times to now."""
        try:
            try:
                resp = await self._call(
                    "Create",
                    lambda h: meta_pb2.CreateRequest(
                        header=h, path=path, mode=self._file_mode(mode), exclusive=not exist_ok
                    ),
                    path=path,
                )
            finally:
                self._attrs.changed(Change.NEW_NAME, path)
            created = resp.created
        except (IsADirectoryError, FileExistsError):
            # Only a non-exclusive create gets here for an existing directory (or other
            # non-file); touch then just updates its times, as touch(1) does.
            if not exist_ok:
                raise
            created = False
        if not created:
            await self.utime(path)

    async def symlink(self, target: str, path: str) -> None:
        """Create path as a symlink to target (stored as given; may be relative)."""
        try:
            await self._call(
                "Symlink", lambda h: meta_pb2.SymlinkRequest(header=h, target=target, path=path), path=path
            )
        finally:
            self._attrs.changed(Change.NEW_NAME, path)

    async def readlink(self, path: str) -> str:
        resp = await self._call("Readlink", lambda h: meta_pb2.ReadlinkRequest(header=h, path=path), path=path)
        return str(resp.target)

    async def link(self, src: str, dst: str) -> None:
        """Hard link: dst becomes another name of the file src (files only)."""
        try:
            await self._call("Link", lambda h: meta_pb2.LinkRequest(header=h, src=src, dst=dst), path=src, path2=dst)
        finally:
            self._attrs.changed(Change.NEW_NAME, dst)

    # -- modes -------------------------------------------------------------------------

    def _file_mode(self, mode: int) -> int:
        return check_mode(mode) & ~self.umask

    def _dir_mode(self, mode: int) -> int:
        # Linux mkdir(2) keeps only the permission and sticky bits of the requested mode.
        return check_mode(mode) & 0o1777 & ~self.umask
