"""The client end of the bulk data channel (bulkwire.py): pipelined chunk requests on
pooled asyncio TCP connections, responses read straight into their own buffers.

Used by the client's data path (reads and writes) and by storage servers forwarding
to their successors. `BulkPool.call(address, method, request, timeout=)` has the
shape of `StoragePool.call` and returns the same reply types (a read's reply is a
`BulkReadReply` whose `data` is a bytearray filled in place by the socket), so the
callers pick a transport and nothing else changes. "ReadV" (a `ReadvRequest`, many
pieces of many inodes on one target, sent as a READVM frame) has no gRPC twin; its reply
is the list of `bulkwire.ReadvResult`, one per piece, each piece's data a view of one
payload. `BulkPool.frames` counts the frames sent, by method.

Receiving: frames land in a staging buffer; a payload that has not fully arrived
gets its own bytearray and the socket fills the rest of it directly (`BufferedProtocol`),
so a 4 MiB chunk is copied from the kernel once and never joined.
Failures: a refused or dropped connection fails every request on it as Unavailable
(the data path's retry rules then apply); an error frame becomes the EmberError the
server raised; a request past its timeout fails as Unavailable and its late reply is
dropped. A hello refused for its token fails as Unauthenticated (not retryable).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from emberfs.common import bulkwire as w
from emberfs.common.errors import ChecksumMismatch, EmberError, Unauthenticated, Unavailable, error_for_code
from emberfs.common.tls import client_ssl_context
from emberfs.proto import common_pb2, storage_pb2

__all__ = ["BULK_METHODS", "BulkPool", "BulkReadReply", "CONNECT_TIMEOUT_S", "Cork", "ReadvRequest"]

BULK_METHODS = frozenset({"Read", "Write", "Forward", "ReadV"})  # ReadV: the bulk channel only
CONNECT_TIMEOUT_S = 5.0
STAGE_BYTES = 256 * 1024


class Cork:
    """The one way frames leave a bulk connection, in order.

    - Frames written in one event-loop turn leave in one send: with many requests in
      flight, a syscall per small frame was the largest cost on both ends.
    - A payload above SMALL_PAYLOAD is handed to the transport PIECE bytes at a time,
      each once the transport has drained (`writable`, set and cleared by the
      protocol's pause_writing/resume_writing). Python 3.11's selector transport keeps
      the unsent rest of a write in one bytearray and moves it down after every partial
      send, so a 4 MiB write cost several copies of itself: that was most of a storage
      server's CPU on sequential reads. Frames written meanwhile queue behind it.
    """

    SMALL_PAYLOAD = 256 * 1024
    PIECE = 256 * 1024

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.writable = asyncio.Event()
        self.writable.set()
        self._queued: list[Any] = []
        self._scheduled = False
        self._backlog: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._streamer: asyncio.Task[None] | None = None
        self.after_region: Any = None  # called after each file region is sent

    def write(self, head: bytes, payload: Any = b"") -> None:
        """Queue a frame; payload: bytes-like, or a file region (an object with
        `send_to(transport)` and `discard()`)."""
        if self._streamer is not None or len(payload) > self.SMALL_PAYLOAD or hasattr(payload, "send_to"):
            self._backlog.append((head, payload))
            if self._streamer is None:
                self.flush()
                self._streamer = asyncio.get_running_loop().create_task(self._stream())
            return
        self._queued.append(head)
        if len(payload):
            self._queued.append(payload)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        if not self.transport.is_closing():
            self.transport.write(queued[0] if len(queued) == 1 else b"".join(queued))

    async def _stream(self) -> None:
        try:
            while self._backlog and not self.transport.is_closing():
                head, payload = self._backlog.popleft()
                if hasattr(payload, "send_to"):  # a file region: sendfile(2), bytes never in Python
                    self.transport.write(head)
                    try:
                        await payload.send_to(self.transport)
                    except (ConnectionError, RuntimeError, OSError):
                        self.transport.abort()  # half a payload went out: the stream is unusable
                        return
                    if self.after_region is not None:
                        self.after_region()
                    continue
                if len(payload) <= self.SMALL_PAYLOAD:
                    self.transport.write(head + bytes(payload) if len(payload) else head)
                    continue
                self.transport.write(head)
                view = memoryview(payload).cast("B")
                for at in range(0, len(view), self.PIECE):
                    await self.writable.wait()
                    if self.transport.is_closing():
                        return
                    self.transport.write(view[at:at + self.PIECE])
        finally:
            self._streamer = None
            if self.transport.is_closing():
                self._drop_backlog()
            elif self._backlog:  # written while we were finishing: keep going
                self._streamer = asyncio.get_running_loop().create_task(self._stream())

    def close(self) -> None:
        if self._streamer is not None:
            self._streamer.cancel()
        self._drop_backlog()

    def _drop_backlog(self) -> None:
        while self._backlog:
            _, payload = self._backlog.popleft()
            if hasattr(payload, "discard"):
                payload.discard()


class BulkReadReply:
    """A Read's reply as the data path uses it (the fields of storage_pb2.ReadResponse)."""

    __slots__ = ("data", "crc32c", "commit_version", "chunk_length", "exists")

    def __init__(self, data: bytes | bytearray | memoryview, head: w.Response) -> None:
        self.data = data
        self.crc32c = head.crc32c
        self.commit_version = head.commit_version
        self.chunk_length = head.chunk_length
        self.exists = bool(head.flags & w.FLAG_EXISTS)


@dataclass(slots=True)
class ReadvRequest:
    """A READVM: pieces of many inodes on one target of a chain. `files` is the file
    table, (inode id, capability) per inode; each read is (file index, chunk index,
    offset, length)."""

    chain_id: int
    chain_version: int
    target_id: int
    files: Sequence[tuple[int, bytes]]
    reads: Sequence[tuple[int, int, int, int]]


# A reply: its head, its ext, and its payload (bytes of our own, or a view of the
# caller's `into` buffer that the payload was read into).
_Reply = tuple[w.Response, bytes, bytes | bytearray | memoryview]


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection: a hello, then pipelined requests matched by id."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[_Reply]] = {}
        self._stage = w.Stage(STAGE_BYTES)
        self._hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._greeted = False
        self._head: w.Response | None = None  # a frame whose payload is still arriving
        self._ext = b""
        self._payload: bytearray | memoryview | None = None
        self._got = 0
        self._into: dict[int, memoryview] = {}  # request id -> the caller's buffer for its payload

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        self.cork = Cork(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        why = f"bulk channel to {self.address} closed" + (f": {exc}" if exc else "")
        self.cork.close()
        self._fail(Unavailable(why))

    def pause_writing(self) -> None:
        self.cork.writable.clear()

    def resume_writing(self) -> None:
        self.cork.writable.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._payload is not None:
            return memoryview(self._payload)[self._got:]  # type: ignore[arg-type]
        return self._stage.free()

    def buffer_updated(self, nbytes: int) -> None:
        if self._payload is not None:
            self._got += nbytes
            if self._got == len(self._payload):
                head, ext, payload = self._head, self._ext, self._payload
                self._head, self._payload = None, None
                assert head is not None
                self._deliver(head, ext, payload)
            return
        self._stage.filled(nbytes)
        try:
            self._parse()
        except w.FrameError as exc:
            self._fail(Unavailable(f"bulk channel to {self.address}: {exc}"))

    def eof_received(self) -> bool:
        return False  # close

    # -- parsing ------------------------------------------------------------------------

    def _parse(self) -> None:
        stage = self._stage
        while True:
            if not self._greeted:
                got = stage.hello(max_body=w.MAX_EXT)
                if got is None:
                    return
                hello, body = got
                message = body.decode("utf-8", "replace")
                self._greeted = True
                if hello.field == w.STATUS_UNAUTHENTICATED:
                    self._fail(Unauthenticated(f"bulk channel to {self.address}: {message}"))
                    return
                if hello.field != w.STATUS_OK or hello.version != w.VERSION:
                    raise w.FrameError(f"server refused the handshake: {message or 'version ' + str(hello.version)}")
                if not self._hello.done():
                    self._hello.set_result(None)
                continue
            framed = stage.head(w.RESPONSE, w.unpack_response)
            if framed is None:
                return
            head, ext = framed
            into = self._into.get(head.request_id)
            if into is not None and len(into) < head.payload_length:
                into = None  # more than was asked for: the caller sees the length and refuses it
            here = stage.take(head.payload_length)
            if len(here) == head.payload_length:
                payload: bytes | memoryview = b""
                if head.payload_length and into is not None:
                    payload = into[:head.payload_length]
                    payload[:] = here
                elif head.payload_length:
                    payload = bytes(here)
                self._deliver(head, ext, payload)
                continue
            # The payload is still arriving: let the socket fill the caller's buffer (or one
            # of its own) directly.
            buffer = into[:head.payload_length] if into is not None else bytearray(head.payload_length)
            buffer[:len(here)] = here
            self._head, self._ext, self._payload, self._got = head, ext, buffer, len(here)
            return

    def _deliver(self, head: w.Response, ext: bytes, payload: bytes | bytearray | memoryview) -> None:
        self._into.pop(head.request_id, None)
        future = self._pending.pop(head.request_id, None)
        if future is not None and not future.done():
            future.set_result((head, ext, payload))

    def _fail(self, error: EmberError) -> None:
        self.closed = True
        if not self._hello.done():
            self._hello.set_exception(error)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    # -- requests -----------------------------------------------------------------------

    async def greet(self, token: bytes, timeout: float) -> None:
        assert self.transport is not None
        self.transport.write(w.pack_hello(w.VERSION, 0, token))
        await asyncio.wait_for(asyncio.shield(self._hello), timeout)

    def _abandon(self, request_id: int) -> None:
        """Forget a request; a late payload must not land in its caller's buffer."""
        self._pending.pop(request_id, None)
        into = self._into.pop(request_id, None)
        if into is not None and self._head is not None and self._head.request_id == request_id:
            self._payload = bytearray(len(self._payload or b""))  # the rest goes to scratch

    async def request(self, head: w.Request, ext: bytes, payload: Any, timeout: float,
                      into: memoryview | None = None) -> tuple[w.Response, bytes, Any]:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise Unavailable(f"bulk channel to {self.address} is closed")
        head.request_id = next(self._ids)
        head.ext_length, head.payload_length = len(ext), len(payload)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Reply] = loop.create_future()
        self._pending[head.request_id] = future
        if into is not None:
            self._into[head.request_id] = into
        # One timer per request (asyncio.wait_for costs a task's worth of callbacks more).
        timer = loop.call_later(timeout, _expire, future, f"bulk request to {self.address} timed out after "
                                f"{timeout:g} s")
        try:
            if not self.cork.writable.is_set():  # the server is not reading: wait, within the timeout
                writable = asyncio.ensure_future(self.cork.writable.wait())
                try:
                    await asyncio.wait((writable, future), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    writable.cancel()
                if future.done():  # expired (or the connection failed) first
                    return future.result()
            self.cork.write(w.pack_request(head) + ext, payload)
            return await future
        finally:
            timer.cancel()
            self._abandon(head.request_id)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(future: asyncio.Future[Any], why: str) -> None:
    if not future.done():
        future.set_exception(Unavailable(why))


class BulkPool:
    """Bulk connections by address (`connections` per address, used round-robin)."""

    def __init__(self, *, token: bytes = b"", connections: int = 1, tls_ca: str | None = None) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self._token = token
        self._tls_ca = tls_ca  # a CA's PEM path: connections are TLS, the server verified
        self._per_address = connections
        self._connections: dict[str, list[_Connection | None]] = {}
        self._connecting: dict[tuple[str, int], asyncio.Task[_Connection]] = {}
        self._turn = itertools.count()
        self._closed = False
        self.frames: collections.Counter[str] = collections.Counter()  # frames sent, by method

    async def _connection(self, address: str, timeout: float) -> _Connection:
        slots = self._connections.setdefault(address, [None] * self._per_address)
        slot = next(self._turn) % self._per_address
        conn = slots[slot]
        if conn is not None and not conn.closed:
            return conn
        key = (address, slot)
        task = self._connecting.get(key)
        if task is None:
            task = self._connecting[key] = asyncio.ensure_future(self._open(address))
            task.add_done_callback(functools.partial(self._opened, key))
        conn = await asyncio.wait_for(asyncio.shield(task), min(timeout, CONNECT_TIMEOUT_S))
        slots[slot] = conn
        return conn

    def _opened(self, key: tuple[str, int], task: asyncio.Task[_Connection]) -> None:
        """Every caller may have given up on the open first (its timeout, its cancellation:
        a forward whose successor left the chain). A connection made anyway takes its slot
        rather than leak; a failure was theirs to see, not a "Task exception was never
        retrieved" in the log, and the next caller opens anew."""
        self._connecting.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        if self._closed:
            task.result().close()
            return
        address, slot = key
        slots = self._connections.setdefault(address, [None] * self._per_address)
        held = slots[slot]
        if held is None or held.closed:
            slots[slot] = task.result()

    async def _open(self, address: str) -> _Connection:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if self._tls_ca:
            tls = {"ssl": client_ssl_context(self._tls_ca), "server_hostname": host.strip("[]"),
                   "ssl_handshake_timeout": CONNECT_TIMEOUT_S}
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(address), host.strip("[]"), int(port), **tls),
                CONNECT_TIMEOUT_S)
            await conn.greet(self._token, CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot open the bulk channel to {address}: {exc or 'timed out'}") from None
        return conn

    async def call(self, address: str, method: str, request: Any, *, timeout: float,
                   into: memoryview | None = None) -> Any:
        """Run Read / Write / Forward over the bulk channel; the reply as gRPC would give it.

        into: a Read's bytes go straight into this buffer (the reply's `data` is a view
        of it) when they fit; otherwise `data` is a buffer of its own."""
        try:
            conn = await self._connection(address, timeout)
        except TimeoutError:
            raise Unavailable(f"cannot open the bulk channel to {address}: timed out") from None
        head, ext, payload = _encode(method, request)
        self.frames[method] += 1
        reply, rext, rpayload = await conn.request(head, ext, payload, timeout, into if method == "Read" else None)
        if reply.status != w.STATUS_OK:
            code, message = w.decode_error(rext)
            raise error_for_code(code)(message)
        if method == "Read":
            return BulkReadReply(rpayload, reply)
        if method == "ReadV":
            try:
                return w.unpack_readv_results(rpayload, len(request.reads))
            except ValueError as exc:  # the answer's bytes are not what was asked for: this replica failed
                raise ChecksumMismatch(f"READV answer from {address}: {exc}") from None
        return storage_pb2.WriteResponse(commit_version=reply.commit_version, chunk_length=reply.chunk_length,
                                         chunk_crc32c=reply.crc32c, chunk_exists=bool(reply.flags & w.FLAG_EXISTS))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._connecting.values()):
            task.cancel()
        connections, self._connections = self._connections, {}
        for slots in connections.values():
            for conn in slots:
                if conn is not None:
                    conn.close()
        if connections:
            await asyncio.sleep(0)  # the transports close their sockets in a callback: let it run


def _encode(method: str, request: Any) -> tuple[w.Request, bytes, Any]:
    if method == "Read":
        r = request
        head = w.Request(w.OP_READ, 0, chain_id=r.chain_id, chunk_index=r.chunk.chunk_index,
                         chain_version=r.chain_version, inode_id=r.chunk.inode_id, offset=r.offset,
                         length=r.length, target_id=r.target_id)
        return head, w.pack_client_ext(r.capability), b""
    if method == "Write":
        ext = w.pack_client_ext(request.capability, request.header.SerializeToString())
        return _update_head(w.OP_WRITE, request), ext, request.data
    if method == "ReadV":
        head = w.Request(w.OP_READVM, 0, chain_id=request.chain_id, chain_version=request.chain_version,
                         target_id=request.target_id)
        return head, w.pack_readv_files(request.files), w.pack_readvm_reads(request.reads)
    if method == "Forward":
        u = request.update
        head = _update_head(w.OP_FORWARD, u)
        head.target_id, head.update_version, head.from_target = (
            request.to_target, request.update_version, request.from_target)
        return head, u.header.SerializeToString(), u.data
    raise ValueError(f"{method} does not travel on the bulk channel")


def _update_head(op: int, u: storage_pb2.WriteRequest) -> w.Request:
    return w.Request(op, 0, kind=u.kind, chain_id=u.chain_id, chunk_index=u.chunk.chunk_index,
                     chain_version=u.chain_version, inode_id=u.chunk.inode_id, offset=u.offset, length=u.length,
                     crc32c=u.crc32c, chunk_size=u.chunk_size)


def decode_update(head: w.Request, ext: bytes, payload: bytes) -> storage_pb2.WriteRequest:
    """The WriteRequest a WRITE or FORWARD frame carries (the server's side of _encode);
    a WRITE's capability is split off its ext first (the bulk server does that)."""
    return storage_pb2.WriteRequest(
        header=common_pb2.RequestHeader.FromString(ext), chain_id=head.chain_id, chain_version=head.chain_version,
        chunk=storage_pb2.ChunkId(inode_id=head.inode_id, chunk_index=head.chunk_index),
        kind=cast(storage_pb2.UpdateKind, head.kind), offset=head.offset, data=payload, crc32c=head.crc32c,
        length=head.length, chunk_size=head.chunk_size)
