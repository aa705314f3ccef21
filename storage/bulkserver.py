"""The storage server's end of the bulk data channel (common/bulkwire.py).

It decodes frames into the same requests the gRPC servicer gets and calls the same
CRAQ operator, so both transports share every rule. Per connection:

- a hello first: a wrong magic or protocol version gets a refusal and the connection
  closes; nothing else is read before it; with tokens (--tokens-file), so does a
  missing or unknown token (STATUS_UNAUTHENTICATED), and FORWARD frames need a server
  token (PermissionDenied error frame; the connection goes on), and READ and WRITE
  frames need a capability for their inode in their ext (access.py; CapabilityRefused
  error frame, nothing written, the connection goes on), and so do READV frames
  (readv.py: many reads of one inode, one answer); a READVM (many reads of many
  inodes) carries one per inode, and a refused one fails that inode's pieces only;
- requests are pipelined: each runs as its own task and answers with its request id;
- a header that breaks the protocol (bad magic, lengths past the caps) gets an error
  frame and the connection closes; an unknown op or a refused request gets its error
  frame and the connection goes on; nothing of a refused request is written;
- a peer that half-closes still gets the answers to what it sent.

Memory stays bounded by what really arrived, not by what a header announces:
- a payload is received in SEGMENT-sized pieces as its bytes come in;
- the connection stops reading (and parsing what it has staged) while it holds
  MAX_INFLIGHT requests or MAX_INFLIGHT_BYTES of their payloads, while its peer is
  not reading the answers (the transport's write buffer is full), or while the whole
  server holds SERVER_BUDGET bytes of payloads; it resumes at half of each.

Slow peers: one that stops in the middle of a frame (or before its hello) for the
stall timeout (--bulk-stall-timeout, STALL_S by default), or trickles a payload slower
than MIN_RATE, is disconnected; time the server itself spends paused is not counted.

Small reads of cached bytes run on the event loop, the rest in the I/O pool
(Operator.read_data); a read of a whole chunk of SENDFILE_MIN or more goes out with
sendfile(2) on the standard asyncio loop (storage/region.py; uvloop has none), the
bytes never entering Python. Answers leave in order through a Cork (one send per
loop turn, large payloads streamed as the socket drains).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from emberfs.common import bulkwire as w
from emberfs.common.auth import Principal, Role, TokenTable
from emberfs.common.bulkclient import Cork, decode_update
from emberfs.common.errors import EmberError, InvalidArgument, PermissionDenied
from emberfs.proto import storage_pb2

from .access import RIGHT_READ, RIGHT_WRITE, AccessGuard
from .craq import Operator
from .readv import serve_readv, serve_readvm
from .region import native_sendfile

__all__ = ["MAX_INFLIGHT", "MAX_INFLIGHT_BYTES", "MIN_RATE", "SERVER_BUDGET", "STALL_S", "BulkServer"]

log = logging.getLogger("emberfs.storage.bulk")

MAX_INFLIGHT = 64  # requests admitted per connection
MAX_INFLIGHT_BYTES = 256 * 1024 * 1024  # their payloads, per connection
SERVER_BUDGET = 512 * 1024 * 1024  # payload bytes held by the whole server
SEGMENT = 1024 * 1024  # a payload is received in pieces of this size
STALL_S = 30.0
MIN_RATE = 1024 * 1024  # bytes/s a peer must keep up while sending a payload
STAGE_BYTES = 256 * 1024
SENDFILE_MIN = 1024 * 1024  # reads of whole chunks this large go out with sendfile(2)

_INFLIGHT, _WRITES, _BUDGET = "in-flight requests", "answers not read", "server payload budget"


class BulkServer:
    """Listens for bulk connections and serves them with one operator."""

    def __init__(self, operator: Operator, *, stall_s: float = STALL_S, budget: int = SERVER_BUDGET,
                 tokens: TokenTable | None = None, ssl_context: ssl.SSLContext | None = None,
                 guard: AccessGuard | None = None) -> None:
        self.op = operator
        self.tokens = tokens
        self.guard = guard  # capability checks (with tokens); None: none
        self.ssl_context = ssl_context  # TLS (common/tls.py); None: plaintext
        self.stall_s = stall_s
        self.budget = budget
        self.held = 0  # payload bytes received or being served, all connections
        self.sendfile = False  # whole-chunk reads go out with sendfile(2): set at start
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerConnection] = set()
        self._starved: set[_ServerConnection] = set()  # paused for the budget

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        # sendfile(2) would put plaintext on a TLS socket: with TLS, reads take the copying path.
        self.sendfile = native_sendfile(loop) and self.ssl_context is None
        self._server = await loop.create_server(lambda: _ServerConnection(self), host, port, reuse_address=True,
                                                ssl=self.ssl_context)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def take(self, conn: _ServerConnection, nbytes: int) -> None:
        self.held += nbytes
        if self.held > self.budget and conn not in self._starved:
            self._starved.add(conn)
            conn.hold(_BUDGET)

    def give_back(self, nbytes: int) -> None:
        self.held -= nbytes
        if self._starved and self.held <= self.budget // 2:
            starved, self._starved = self._starved, set()
            for conn in starved:
                conn.release(_BUDGET)

    def forget(self, conn: _ServerConnection) -> None:
        self._connections.discard(conn)
        self._starved.discard(conn)


class _ServerConnection(asyncio.BufferedProtocol):
    def __init__(self, server: BulkServer) -> None:
        self.server = server
        self.op = server.op
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._stage = w.Stage(STAGE_BYTES)
        self._greeted = False
        # A payload still arriving: its frame, the pieces so far, the one being filled.
        self._head: w.Request | None = None
        self._ext = b""
        self._pieces: list[bytearray] = []
        self._piece: bytearray | None = None
        self._piece_got = 0
        self._remaining = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._held = 0  # payload bytes of this connection: received, or admitted and not yet served
        self._reasons: set[str] = set()  # why reading is paused
        self._eof = False
        self._since: float | None = None  # when the frame in progress (or the wait for hello) began
        self.principal: Principal | None = None  # who the hello's token named (tokens on)
        self._last_rx = self._loop.time()
        self._tick: asyncio.TimerHandle | None = None

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        self.cork = Cork(transport)
        self.cork.after_region = self._after_region
        self.server._connections.add(self)
        self._since = self._loop.time()
        self._schedule_tick()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cork.close()
        self.server.forget(self)
        if self._tick is not None:
            self._tick.cancel()
        self._drop_payload()
        for task in self._tasks:
            task.cancel()  # nobody is left to hear the answers

    def pause_writing(self) -> None:
        self.cork.writable.clear()
        self.hold(_WRITES)

    def resume_writing(self) -> None:
        self.cork.writable.set()
        self.release(_WRITES)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._head is not None:
            if self._piece is None:
                size = min(SEGMENT, self._remaining)
                self._piece, self._piece_got = bytearray(size), 0
                self._take(size)
            return memoryview(self._piece)[self._piece_got:]
        return self._stage.free()

    def buffer_updated(self, nbytes: int) -> None:
        self._last_rx = self._loop.time()
        if self._head is not None:
            assert self._piece is not None
            self._piece_got += nbytes
            self._remaining -= nbytes
            if self._piece_got == len(self._piece):
                self._pieces.append(self._piece)
                self._piece = None
            if self._remaining == 0:
                head, ext, pieces = self._head, self._ext, self._pieces
                self._head, self._pieces = None, []
                self._admit(head, ext, b"".join(pieces))
            return
        self._stage.filled(nbytes)
        self._parse_guarded()

    def eof_received(self) -> bool:
        # A peer may send its requests and shut its side: answer them, then close.
        self._eof = True
        return bool(self._tasks)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- flow control -------------------------------------------------------------------

    def hold(self, reason: str) -> None:
        """Stop reading (and parsing staged frames) until every reason is released."""
        if not self._reasons and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._reasons.add(reason)

    def release(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if self._reasons or self.transport is None or self.transport.is_closing():
            return
        if self._since is not None:
            self._since = self._loop.time()  # the pause was ours, not the peer's
        self.transport.resume_reading()
        self._loop.call_soon(self._parse_guarded)  # frames staged while paused

    def _after_region(self) -> None:
        """loop.sendfile resumes reading when it ends, whatever we wanted: pause again."""
        if self._reasons and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _take(self, nbytes: int) -> None:
        self._held += nbytes
        self.server.take(self, nbytes)

    def _release_bytes(self, nbytes: int) -> None:
        self._held -= nbytes
        self.server.give_back(nbytes)

    def _drop_payload(self) -> None:
        """The connection ended mid-payload: give back what its pieces held."""
        if self._head is not None:
            dropped = sum(len(p) for p in self._pieces) + (len(self._piece) if self._piece is not None else 0)
            self._head, self._pieces, self._piece = None, [], None
            self._release_bytes(dropped)

    # -- parsing ------------------------------------------------------------------------

    def _parse_guarded(self) -> None:
        try:
            self._parse()
        except w.FrameError as exc:
            self._refuse_stream(str(exc))
        partial = self._head is not None or len(self._stage) > 0 or not self._greeted
        if not partial:
            self._since = None
        elif self._since is None:
            self._since = self._loop.time()

    def _parse(self) -> None:
        stage = self._stage
        while self.transport is not None and not self.transport.is_closing() and not self._reasons:
            if not self._greeted:
                got = stage.hello(max_body=w.MAX_TOKEN)
                if got is None:
                    return
                hello, token = got
                if hello.version != w.VERSION:
                    message = f"unsupported bulk protocol version {hello.version}; this server speaks {w.VERSION}"
                    self.transport.write(w.pack_hello(w.VERSION, w.STATUS_ERROR, message.encode()))
                    self.transport.close()
                    return
                if self.server.tokens is not None:
                    self.principal = self.server.tokens.authenticate(token)
                    if self.principal is None:
                        log.warning("bulk connection from %s refused: missing or invalid token", self._peer())
                        refusal = b"missing or invalid token (the client's token=, EMBERFS_TOKEN or --token-file)"
                        self.transport.write(w.pack_hello(w.VERSION, w.STATUS_UNAUTHENTICATED, refusal))
                        self.transport.close()
                        return
                self._greeted = True
                self._since = None
                self.transport.write(w.pack_hello(w.VERSION, w.STATUS_OK, b""))
                continue
            framed = stage.head(w.REQUEST, w.unpack_request)
            if framed is None:
                return
            head, ext = framed
            here = stage.take(head.payload_length)
            if len(here) == head.payload_length:
                payload = bytes(here)
                self._take(len(payload))
                self._admit(head, ext, payload)
                continue
            # The rest of the payload goes straight into pieces of its own.
            self._head, self._ext, self._remaining = head, ext, head.payload_length - len(here)
            self._pieces, self._piece = [], None
            if len(here):
                self._take(len(here))
                self._pieces.append(bytearray(here))
            self._since = self._loop.time()
            return

    def _refuse_stream(self, why: str) -> None:
        """The stream cannot be trusted past this point: say why, then close."""
        log.warning("bulk connection from %s closed: %s", self._peer(), why)
        if self.transport is not None and not self.transport.is_closing():
            self.cork.flush()  # answers already queued go first
            ext = w.encode_error(InvalidArgument.code, f"bulk frame refused: {why}")
            self.transport.write(w.pack_response(w.Response(0, w.STATUS_ERROR, ext_length=len(ext))) + ext)
            self.transport.close()

    def _peer(self) -> Any:
        return self.transport.get_extra_info("peername") if self.transport is not None else None

    # -- requests -----------------------------------------------------------------------

    def _admit(self, head: w.Request, ext: bytes, payload: bytes) -> None:
        """Serve one whole frame (its payload bytes already counted as held)."""
        self._since = None
        task = self._loop.create_task(self._serve(head, ext, payload))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if len(self._tasks) >= MAX_INFLIGHT or self._held >= MAX_INFLIGHT_BYTES:
            self.hold(_INFLIGHT)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if len(self._tasks) < MAX_INFLIGHT // 2 and self._held < MAX_INFLIGHT_BYTES // 2:
            self.release(_INFLIGHT)
        if self._eof and not self._tasks and self.transport is not None:
            self.cork.flush()
            self.transport.close()

    async def _serve(self, head: w.Request, ext: bytes, payload: bytes) -> None:
        try:
            reply, data = await self._dispatch(head, ext, payload)
        except EmberError as exc:
            self._answer_error(head.request_id, exc.code, exc.message)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bulk %s request failed", w.OP_NAMES.get(head.op, head.op))
            self._answer_error(head.request_id, "Internal", "internal error (see the storage server log)")
            return
        finally:
            self._release_bytes(len(payload))
        if self.transport is None or self.transport.is_closing():
            return
        reply.payload_length = len(data)
        self.cork.write(w.pack_response(reply), data)

    def _answer_error(self, request_id: int, code: str, message: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        ext = w.encode_error(code, message)
        self.cork.write(w.pack_response(w.Response(request_id, w.STATUS_ERROR, ext_length=len(ext))) + ext)

    async def _dispatch(self, head: w.Request, ext: bytes, payload: bytes) -> tuple[w.Response, Any]:
        op = self.op
        if head.op in (w.OP_READ, w.OP_WRITE, w.OP_READV):
            try:
                capability, ext = w.split_client_ext(ext)
            except ValueError as exc:
                raise InvalidArgument(f"the frame's ext: {exc}") from None
            guard = self.server.guard
            if guard is not None:
                right = RIGHT_WRITE if head.op == w.OP_WRITE else RIGHT_READ
                guard.check(self.principal, capability, head.inode_id, right)
        if head.op == w.OP_READVM:
            return w.Response(head.request_id), await serve_readvm(op, head, ext, payload, self._authorize_read)
        if head.op == w.OP_READV:
            if ext:
                raise InvalidArgument("a READV frame carries nothing in its ext past the capability")
            return w.Response(head.request_id), await serve_readv(op, head, payload)
        if head.op == w.OP_READ:
            if ext or payload:
                raise InvalidArgument("a READ frame carries no payload and nothing in its ext past the capability")
            request = storage_pb2.ReadRequest(
                chain_id=head.chain_id, chain_version=head.chain_version,
                chunk=storage_pb2.ChunkId(inode_id=head.inode_id, chunk_index=head.chunk_index),
                offset=head.offset, length=head.length, target_id=head.target_id)
            region_ok = self.server.sendfile and head.length >= SENDFILE_MIN
            data, crc, meta = await op.read_data(request, region_ok=region_ok)
            flags = w.FLAG_EXISTS if meta.exists else 0
            return w.Response(head.request_id, flags=flags, commit_version=meta.commit_version,
                              chunk_length=meta.length, crc32c=crc), data
        if head.op in (w.OP_WRITE, w.OP_FORWARD):
            try:
                update = decode_update(head, ext, payload)
            except Exception as exc:  # protobuf's DecodeError and friends
                raise InvalidArgument(f"the frame's request header does not parse: {exc}") from None
            if head.op == w.OP_WRITE:
                reply = await op.write(update)
            else:
                peer = self.principal
                if self.server.tokens is not None and (peer is None or peer.role is not Role.SERVER):
                    raise PermissionDenied("FORWARD needs a server token (chain peers only)")
                reply = await op.forward(storage_pb2.ForwardRequest(
                    update=update, update_version=head.update_version, from_target=head.from_target,
                    to_target=head.target_id))
            return w.Response(head.request_id, flags=w.FLAG_EXISTS if reply.chunk_exists else 0,
                              commit_version=reply.commit_version, chunk_length=reply.chunk_length,
                              crc32c=reply.chunk_crc32c), b""
        raise InvalidArgument(f"unknown bulk op {head.op}")


    def _authorize_read(self, inode_id: int, capability: bytes) -> None:
        """A READVM file's check: CapabilityRefused unless this peer may read the inode."""
        if self.server.guard is not None:
            self.server.guard.check(self.principal, capability, inode_id, RIGHT_READ)

    # -- slow peers ---------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        self._tick = self._loop.call_later(max(self.server.stall_s / 4, 0.05), self._on_tick)

    def _on_tick(self) -> None:
        """Cut off a peer that stalls mid-frame, or trickles a payload below MIN_RATE."""
        if self.transport is None or self.transport.is_closing():
            return
        self._schedule_tick()
        if self._since is None:
            return
        if self._reasons:
            self._since = self._loop.time()  # paused by us: the peer is not to blame
            return
        now, stall = self._loop.time(), self.server.stall_s
        if not self._greeted:
            if now - self._since > stall:
                log.warning("bulk connection from %s closed: no hello in %g s", self._peer(), stall)
                self.transport.close()
        elif now - max(self._last_rx, self._since) > stall:
            self._refuse_stream(f"peer sent part of a frame and nothing for {stall:g} s")
        elif self._head is not None and now - self._since > stall + self._head.payload_length / MIN_RATE:
            self._refuse_stream(f"peer sends its payload slower than {MIN_RATE // 1024} KiB/s")
