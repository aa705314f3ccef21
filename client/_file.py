"""`EmberFile`: an async binary file object over the chunk data path.

    async with fs.open("/data/x.bin", "rb") as f:
        header = await f.read(16)
    f = await fs.open("/data/y.bin", "wb"); await f.write(b"..."); await f.close()

Modes follow Python's `open` for binary files: "rb", "wb" (create or truncate), "xb"
(create; FileExistsError if it exists), "ab" (append), "r+b" (read and write an
existing file). Errors follow Python's too: bad mode -> ValueError, reading a
write-only or writing a read-only file -> io.UnsupportedOperation, anything on a closed
file -> ValueError, a negative seek -> OSError(EINVAL).

Opening asks the metaserver every time (close-to-open: a change another client made
before the open is seen) and refreshes the client's attribute cache; opening for
writing, flush and close drop the file's cached attributes (`_attrcache.py`).

Reads: a reader that keeps reading where it stopped gets whole chunks fetched ahead of
it (the window doubles per sequential read up to the client's `readahead` bytes, as
Linux readahead ramps up); a read elsewhere drops the window and fetches just its range.

Writes: bytes are buffered per chunk. A chunk buffer that fills its whole chunk is sent
at once in the background (REPLACE), so a sequential writer keeps many chunks in flight;
partial chunks are sent as WRITEs at their offset on flush, on a non-contiguous write
into the same chunk, and before a read of this handle. Sends of one chunk are ordered.
The first failed send is raised by the next write, flush or close. The file length
reaches the metaserver on flush (Sync) and close (Close); until then other clients see
the old length. One file object is for one task at a time, as Python's are.

Lengths and truncates: a report carries the truncate version the handle's length is
based on (from the open, then from each report's reply). If another client truncated
the file since, the metaserver refuses a report that would grow it (`stale`): the
handle then asks storage what survived the truncate (`DataPath.storage_end`), caps it
at the end of its own writes and reports that at the current version, so a truncate
is never undone by a length seen before it, while a write past the new end still
extends the file (zeros in the hole), as on POSIX. Bytes still buffered when the
truncate came reach storage after it, so they count as written after it (as a stdio
buffer flushed after a truncate does). After each report the handle takes the
metaserver's length and version as its own. A "wb" open removes the old chunks up
to the larger of the length the metaserver truncated from and what storage holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno as _errno
import functools
import io
from collections.abc import Awaitable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from emberfs.common.errors import Busy, EmberError
from emberfs.common.layout import ChunkSpan, chunk_span
from emberfs.proto import meta_pb2, storage_pb2

from ._attrcache import Change
from ._datapath import FileLayout, recovered_length
from ._errors import os_error
from ._filehost import FileHost
from ._plan import chunk_count

__all__ = ["EmberFile", "OpenMode", "parse_mode"]

_MAX_SENDING = 8  # background chunk sends per file before write() waits (more measured no faster)
_MAX_REPORTS = 5  # stale reports in a row (a truncate between each) before a report gives up


@dataclass(frozen=True, slots=True)
class OpenMode:
    readable: bool
    writable: bool
    create: bool  # create the file when missing
    exclusive: bool  # ... and fail when it exists
    truncate: bool
    append: bool


_MODES = {
    "rb": OpenMode(True, False, False, False, False, False),
    "wb": OpenMode(False, True, True, False, True, False),
    "xb": OpenMode(False, True, True, True, False, False),
    "ab": OpenMode(False, True, True, False, False, True),
    "r+b": OpenMode(True, True, False, False, False, False),
}
_ALIASES = {"br": "rb", "bw": "wb", "bx": "xb", "ba": "ab", "rb+": "r+b", "+rb": "r+b", "br+": "r+b"}


def parse_mode(mode: str) -> OpenMode:
    """The meaning of a binary open mode; ValueError for text or unknown modes."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, not {type(mode).__name__}")
    key = _ALIASES.get(mode, mode)
    if key not in _MODES:
        raise ValueError(f"invalid mode: {mode!r} (EmberFS files are binary: rb, wb, xb, ab, r+b)")
    return _MODES[key]


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class _ChunkBuffer:
    """Unsent bytes of one chunk: a contiguous run from `start` within the chunk."""

    __slots__ = ("start", "data")

    def __init__(self, start: int) -> None:
        self.start = start
        self.data = bytearray()

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def absorb(self, offset: int, piece: memoryview) -> bool:
        """Put piece at chunk offset if it touches or overlaps the run; False if not."""
        if not self.start <= offset <= self.end:
            return False
        at = offset - self.start
        self.data[at : at + len(piece)] = piece
        return True


class EmberFile:
    """A binary file of an EmberFS cluster; see the module docstring."""

    def __init__(self, client: FileHost, path: str, mode: str = "rb", *, perm: int = 0o666) -> None:
        self._mode = parse_mode(mode)
        self._client, self.name, self.mode, self._perm = client, path, mode, perm
        self._state = _State.UNOPENED
        self._file: FileLayout | None = None
        self._session_id = 0
        self._length = 0  # the file's length as this handle knows it (own writes included)
        self._truncate_version = 0  # the inode's truncate version `_length` is based on
        self._written_end = 0  # the end of the bytes this handle wrote
        self._pos = 0
        # reads
        self._next_sequential = 0
        self._window = 0
        self._ahead: dict[int, asyncio.Task[bytes]] = {}  # chunk index -> whole-chunk read
        # writes
        self._dirty: dict[int, _ChunkBuffer] = {}
        self._sending: dict[int, asyncio.Task[None]] = {}  # chunk index -> its latest send
        self._failure: BaseException | None = None
        self._wrote = False
        self._unsynced = False

    def __repr__(self) -> str:
        return f"<EmberFile {self.name!r} mode={self.mode!r} {self._state.value}>"

    # -- opening and closing -----------------------------------------------------------

    def __await__(self) -> Generator[Any, None, EmberFile]:
        return self._open().__await__()

    async def __aenter__(self) -> EmberFile:
        return await self._open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _open(self) -> EmberFile:
        if self._state is not _State.UNOPENED:
            if self._state is _State.OPEN:
                return self
            raise ValueError("I/O operation on closed file.")
        client, path, mode = self._client, self.name, self._mode
        if not mode.writable:
            # Close-to-open: always asked (fresh), and the answer refreshes the client's
            # attribute cache; a read-only open has no session and nothing to close.
            inode, self._file = await client._open_read(path, fresh=True)
            self._length, self._truncate_version = inode.length, inode.truncate_version
            self._state = _State.OPEN
            return self
        try:
            inode = await self._open_for_write()
        finally:  # the open may have created or truncated the file, even when it failed
            client._attrs.changed(Change.FILE_CHANGED, path, self._file.inode_id if self._file else None)
        self._length, self._truncate_version = inode.length, inode.truncate_version
        if mode.append:
            self._pos = self._length
        self._state = _State.OPEN
        return self

    async def _open_for_write(self) -> meta_pb2.Inode:
        """Create or Open with a write session (and a "wb" open's removal of old bytes)."""
        client, path, mode = self._client, self.name, self._mode
        if mode.create:
            resp = await client._call(
                "Create",
                lambda h: meta_pb2.CreateRequest(
                    header=h,
                    path=path,
                    mode=client._file_mode(self._perm),
                    exclusive=mode.exclusive,
                    truncate=mode.truncate,
                    open_for_write=True,
                ),
                path=path,
            )
            inode = resp.inode
            client._caps.offer(inode.inode_id, resp.capability)  # before the removals below use it
            if mode.truncate and not resp.created:
                # The old bytes must be gone before any new write lands in their chunks:
                # up to the length the metaserver truncated from, or what storage holds.
                file = FileLayout(inode.inode_id, inode.layout)
                await self._chunk_io(client._datapath.truncate(file, resp.old_length, 0))
        else:
            resp = await client._call(
                "Open", lambda h: meta_pb2.OpenRequest(header=h, path=path, write=True), path=path
            )
            inode = resp.inode
        self._bind(resp)
        return inode

    def _bind(self, resp: Any) -> None:
        self._file = FileLayout(resp.inode.inode_id, resp.inode.layout)
        self._session_id = resp.session_id
        # The capability the open was granted: the data path sends it, and renews it
        # while this file stays open.
        self._client._caps.offer(resp.inode.inode_id, resp.capability)

    async def close(self) -> None:
        """Send what is buffered, report the length, end the write session. Idempotent."""
        if self._state is not _State.OPEN:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        self._drop_readahead()
        if not self._mode.writable:
            return
        try:
            await self._send_all()
        except BaseException:
            # End the session without a length, but never let that hide why we failed.
            with contextlib.suppress(OSError):
                await self._report("Close", wrote=False)
            raise
        await self._report("Close", wrote=self._wrote)

    async def _report(self, method: str, *, wrote: bool) -> None:
        """Report the length on "Sync" or "Close"; a stale report (a truncate came after
        this handle's view) is redone with the length recovered from storage."""
        file, length = self._layout(), self._length
        for _ in range(_MAX_REPORTS):
            resp = await self._client._report_length(
                method, self.name, self._session_id, file.inode_id, length, self._truncate_version, wrote=wrote
            )
            self._truncate_version = resp.inode.truncate_version
            if not resp.stale:
                self._length = resp.inode.length
                return
            held = await self._chunk_io(self._client._datapath.storage_end(file))
            length = recovered_length(held, self._written_end)
        raise os_error(Busy(f"the file was truncated during each of {_MAX_REPORTS} length reports"), self.name)

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def readable(self) -> bool:
        self._check_open()
        return self._mode.readable

    def writable(self) -> bool:
        self._check_open()
        return self._mode.writable

    def seekable(self) -> bool:
        self._check_open()
        return True

    # -- position ------------------------------------------------------------------------

    def tell(self) -> int:
        self._check_open()
        return self._pos

    async def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            base = 0
        elif whence == io.SEEK_CUR:
            base = self._pos
        elif whence == io.SEEK_END:
            base = self._length
        else:
            raise ValueError(f"whence value {whence} unsupported")
        position = base + offset
        if position < 0:
            raise OSError(_errno.EINVAL, f"negative seek position {position}", self.name)
        self._pos = position
        return position

    # -- reading -------------------------------------------------------------------------

    async def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes from the position (all to EOF with -1); b"" at EOF."""
        self._check_open()
        if not self._mode.readable:
            raise io.UnsupportedOperation("read")
        if size is None:
            size = -1
        if size < -1:
            raise ValueError("read length must be non-negative or -1")
        await self._send_all()  # this handle's own writes must be visible to it
        if size == -1 or self._pos + size > self._length:
            await self._refresh_length()
        if size == -1:
            size = max(0, self._length - self._pos)
        data = await self._read_at(self._pos, size)
        self._pos += len(data)
        return data

    async def pread(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` without moving the position or the readahead
        window (os.pread); safe to run many at once on one handle, and no lookup of the
        path at all (`Client.read_range` reuses one for the client's attr_timeout)."""
        self._check_open()
        if not self._mode.readable:
            raise io.UnsupportedOperation("read")
        if offset < 0 or length < 0:
            raise OSError(_errno.EINVAL, f"negative offset or length ({offset}, {length})", self.name)
        if self._dirty or self._sending:
            await self._send_all()
        file = self._layout()
        spans = chunk_span(offset, length, file.chunk_size, self._length)
        return await self._read_spans(file, spans)

    async def pread_into(self, buffer: Any, offset: int) -> int:
        """Fill `buffer` with the bytes at `offset` (short at EOF); return how many. Like
        `pread`, but chunk payloads land in the buffer itself: no copy, no join."""
        self._check_open()
        if not self._mode.readable:
            raise io.UnsupportedOperation("read")
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("pread_into needs a writable buffer")
        if offset < 0:
            raise OSError(_errno.EINVAL, f"negative offset {offset}", self.name)
        if self._dirty or self._sending:
            await self._send_all()
        file = self._layout()
        spans = chunk_span(offset, len(view), file.chunk_size, self._length)
        n = sum(span.length for span in spans)
        await self._chunk_io(self._client._datapath.read_spans_into(file, spans, view[:n]))
        return n

    async def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = await self.read(len(view))
        view[: len(data)] = data
        return len(data)

    async def readall(self) -> bytes:
        return await self.read(-1)

    async def _refresh_length(self) -> None:
        """A reader may see the file grow (another writer closed); a writer knows best."""
        if self._mode.writable:
            return
        inode, _ = await self._client._file(self.name)
        if inode.inode_id == self._layout().inode_id:
            self._length = inode.length

    async def _read_at(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self._length)
        if end <= offset:
            return b""
        file = self._layout()
        sequential = offset == self._next_sequential
        self._next_sequential = end
        if not sequential or self._client.readahead == 0:
            self._drop_readahead()
            self._window = 0
            spans = chunk_span(offset, end - offset, file.chunk_size, self._length)
            return await self._read_spans(file, spans)
        cs = file.chunk_size
        self._window = min(self._client.readahead, max(end - offset, 2 * self._window, cs))
        first, last_needed = offset // cs, (end - 1) // cs
        last_ahead = min((end + self._window - 1) // cs, chunk_count(self._length, cs) - 1)
        for index in [i for i in self._ahead if i < first]:
            _discard(self._ahead.pop(index))
        for index in range(first, max(last_needed, last_ahead) + 1):
            if index not in self._ahead:
                self._ahead[index] = asyncio.ensure_future(self._read_chunk(index))
        parts = []
        for index in range(first, last_needed + 1):
            try:
                chunk = await self._ahead[index]
            except EmberError as exc:
                self._ahead.pop(index, None)
                raise os_error(exc, self.name) from None
            lo = max(offset - index * cs, 0)
            hi = min(end - index * cs, cs)
            parts.append(chunk[lo:hi])
        return b"".join(parts)

    async def _read_spans(self, file: FileLayout, spans: list[ChunkSpan]) -> bytes:
        return await self._chunk_io(self._client._read_bytes(file, spans))

    async def _read_chunk(self, index: int) -> bytes:
        file = self._layout()
        length = min(file.chunk_size, self._length - index * file.chunk_size)
        spans = chunk_span(index * file.chunk_size, length, file.chunk_size, self._length)
        return (await self._client._datapath.read_spans(file, spans))[0]

    def _drop_readahead(self) -> None:
        for task in self._ahead.values():
            _discard(task)
        self._ahead.clear()

    # -- writing -------------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer `data` at the position (at EOF in append mode); returns its length."""
        self._check_open()
        if not self._mode.writable:
            raise io.UnsupportedOperation("write")
        self._raise_failure()
        view = memoryview(data).cast("B")
        if not view:
            return 0
        if self._mode.append:
            self._pos = self._length
        self._drop_readahead()
        file = self._layout()
        offset, cs = self._pos, file.chunk_size
        done = 0
        for span in chunk_span(offset, len(view), cs):
            piece = view[done : done + span.length]
            done += span.length
            buffer = self._dirty.get(span.chunk_index)
            if buffer is None and span.length == cs:
                # A whole chunk in one write (the bulk case): one copy, no buffering.
                self._start_send(span.chunk_index, 0, bytes(piece))
                await self._backpressure()
                continue
            if buffer is not None and not buffer.absorb(span.offset, piece):
                self._send(span.chunk_index)  # a gap inside the chunk: send the old run first
                buffer = None
            if buffer is None:
                buffer = self._dirty[span.chunk_index] = _ChunkBuffer(span.offset)
                buffer.absorb(span.offset, piece)
            if buffer.start == 0 and len(buffer.data) >= cs:
                self._send(span.chunk_index)
                await self._backpressure()  # a big write must not buffer all of itself
        self._pos = offset + len(view)
        self._length = max(self._length, self._pos)
        self._written_end = max(self._written_end, self._pos)
        self._wrote = self._unsynced = True
        return len(view)

    async def flush(self) -> None:
        """Send every buffered byte and report the length to the metaserver (Sync)."""
        self._check_open()
        if not self._mode.writable:
            return
        await self._send_all()
        if self._unsynced:
            await self._report("Sync", wrote=True)
            self._unsynced = False

    def _send(self, index: int) -> None:
        """Start sending chunk `index`'s buffer."""
        buffer = self._dirty.pop(index)
        self._start_send(index, buffer.start, bytes(buffer.data))

    def _start_send(self, index: int, start: int, payload: bytes) -> None:
        """Send payload at `start` in chunk `index`, after any earlier send of that chunk."""
        before = self._sending.get(index)
        task = asyncio.ensure_future(self._send_chunk(index, start, payload, before))
        self._sending[index] = task
        task.add_done_callback(functools.partial(self._sent, index))

    async def _send_chunk(self, index: int, start: int, payload: bytes, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait([before])  # order only; its failure is recorded by itself
        file, data_path = self._layout(), self._client._datapath
        if start == 0 and len(payload) == file.chunk_size:
            await data_path.update_chunk(file, index, storage_pb2.REPLACE, payload)
        else:
            await data_path.update_chunk(file, index, storage_pb2.WRITE, payload, offset=start)

    def _sent(self, index: int, task: asyncio.Task[None]) -> None:
        if self._sending.get(index) is task:
            del self._sending[index]
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def _backpressure(self) -> None:
        while len(self._sending) > _MAX_SENDING:
            await asyncio.wait(list(self._sending.values()), return_when=asyncio.FIRST_COMPLETED)
        self._raise_failure()

    async def _send_all(self) -> None:
        for index in list(self._dirty):
            self._send(index)
        while self._sending:
            await asyncio.wait(list(self._sending.values()))
        self._raise_failure()

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is None:
            return
        if isinstance(failure, EmberError):
            raise os_error(failure, self.name) from None
        raise failure

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is _State.CLOSED:
            raise ValueError("I/O operation on closed file.")
        if self._state is _State.UNOPENED:
            raise ValueError("the file is not open yet: `await fs.open(...)` or `async with fs.open(...)`")

    def _layout(self) -> FileLayout:
        assert self._file is not None
        return self._file

    async def _chunk_io(self, work: Awaitable[Any]) -> Any:
        try:
            return await work
        except EmberError as exc:
            raise os_error(exc, self.name) from None


def _discard(task: asyncio.Task[Any]) -> None:
    """Drop a prefetch nobody will read: cancel it, or consume its failure so asyncio
    does not log "exception was never retrieved" for a read the caller never asked for."""
    if task.done():
        if not task.cancelled():
            task.exception()
    else:
        task.cancel()
