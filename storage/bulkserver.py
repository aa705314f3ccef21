"""The storage server's end of the bulk data channel (common/bulkwire.py).

It decodes frames into the same requests the gRPC servicer gets and calls the same
CRAQ operator, so both transports share every rule. Per connection:

- a hello first: a wrong magic or protocol version gets a refusal and the connection
  closes; nothing else is read before it;
- requests are pipelined: each runs as its own task and answers with its request id;
  at most MAX_INFLIGHT requests (and MAX_INFLIGHT_BYTES of their payloads) are
  admitted before the server stops reading from the socket, so memory stays bounded;
- a header that breaks the protocol (bad magic, lengths past the caps) gets an error
  frame and the connection closes; an unknown op or a refused request gets its error
  frame and the connection goes on; nothing of a refused request is written;
- a peer that stops in the middle of a frame (or before its hello) for the stall
  timeout (--bulk-stall-timeout, STALL_S by default) is disconnected.

Reads are served from a pooled buffer filled with `preadv` in the I/O pool (the
operator's `read_into`) and handed to the transport, never blocking the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from emberfs.common import bulkwire as w
from emberfs.common.bulkclient import Cork, decode_update
from emberfs.common.errors import EmberError, InvalidArgument
from emberfs.proto import storage_pb2

from .craq import Operator

__all__ = ["MAX_INFLIGHT", "MAX_INFLIGHT_BYTES", "STALL_S", "BulkServer"]

log = logging.getLogger("emberfs.storage.bulk")

MAX_INFLIGHT = 64
MAX_INFLIGHT_BYTES = 256 * 1024 * 1024
STALL_S = 30.0
STAGE_BYTES = 256 * 1024


class BulkServer:
    """Listens for bulk connections and serves them with one operator."""

    def __init__(self, operator: Operator, *, stall_s: float = STALL_S) -> None:
        self.op = operator
        self.stall_s = stall_s
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerConnection] = set()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerConnection(self), host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()


class _ServerConnection(asyncio.BufferedProtocol):
    def __init__(self, server: BulkServer) -> None:
        self.server = server
        self.op = server.op
        self.transport: asyncio.Transport | None = None
        self._stage = bytearray(STAGE_BYTES)
        self._start = self._end = 0
        self._greeted = False
        self._head: w.Request | None = None
        self._ext = b""
        self._payload: bytearray | None = None
        self._got = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight_bytes = 0
        self._paused = False
        self._stall: asyncio.TimerHandle | None = None

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        self.cork = Cork(transport)
        self.server._connections.add(self)
        self._arm_stall()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        if self._stall is not None:
            self._stall.cancel()
        for task in self._tasks:
            task.cancel()  # nobody is left to hear the answers

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._payload is not None:
            return memoryview(self._payload)[self._got:]
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._stage) - self._end < 4096:
            kept = self._end - self._start
            self._stage[:kept] = self._stage[self._start:self._end]
            self._start, self._end = 0, kept
        return memoryview(self._stage)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self._arm_stall()
        if self._payload is not None:
            self._got += nbytes
            if self._got == len(self._payload):
                head, ext, payload = self._head, self._ext, self._payload
                self._head, self._payload = None, None
                assert head is not None
                self._admit(head, ext, payload)
            return
        self._end += nbytes
        try:
            self._parse()
        except w.FrameError as exc:
            self._refuse_stream(str(exc))

    def eof_received(self) -> bool:
        return False

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- parsing ------------------------------------------------------------------------

    def _parse(self) -> None:
        stage = self._stage
        while self.transport is not None and not self.transport.is_closing():
            have = self._end - self._start
            if not self._greeted:
                if have < w.HELLO.size:
                    return
                hello = w.unpack_hello(stage[self._start:self._start + w.HELLO.size], max_body=w.MAX_TOKEN)
                if have < w.HELLO.size + hello.body_length:
                    return
                self._start += w.HELLO.size + hello.body_length
                if hello.version != w.VERSION:
                    message = f"unsupported bulk protocol version {hello.version}; this server speaks {w.VERSION}"
                    self.transport.write(w.pack_hello(w.VERSION, w.STATUS_ERROR, message.encode()))
                    self.transport.close()
                    return
                self._greeted = True
                self.transport.write(w.pack_hello(w.VERSION, w.STATUS_OK, b""))
                continue
            if have < w.REQUEST.size:
                return
            head = w.unpack_request(stage[self._start:self._start + w.REQUEST.size])
            ext_at = self._start + w.REQUEST.size
            payload_at = ext_at + head.ext_length
            if self._end < payload_at:
                return  # ext lengths are capped well below the stage size
            ext = bytes(stage[ext_at:payload_at])
            end = payload_at + head.payload_length
            if self._end >= end:
                payload = stage[payload_at:end] if head.payload_length else bytearray()
                self._start = end
                self._admit(head, ext, payload)
                continue
            buffer = bytearray(head.payload_length)
            got = self._end - payload_at
            buffer[:got] = memoryview(stage)[payload_at:self._end]
            self._start = self._end = 0
            self._head, self._ext, self._payload, self._got = head, ext, buffer, got
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

    def _admit(self, head: w.Request, ext: bytes, payload: bytearray) -> None:
        self._inflight_bytes += len(payload)
        task = asyncio.get_running_loop().create_task(self._serve(head, ext, payload))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if len(self._tasks) >= MAX_INFLIGHT or self._inflight_bytes >= MAX_INFLIGHT_BYTES:
            self._pause()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._paused and len(self._tasks) < MAX_INFLIGHT // 2 and self._inflight_bytes < MAX_INFLIGHT_BYTES // 2:
            self._paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    async def _serve(self, head: w.Request, ext: bytes, payload: bytearray) -> None:
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
            self._inflight_bytes -= len(payload)
        if self.transport is None or self.transport.is_closing():
            return
        reply.payload_length = len(data)
        self.cork.write(w.pack_response(reply), data)

    def _answer_error(self, request_id: int, code: str, message: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        ext = w.encode_error(code, message)
        self.cork.write(w.pack_response(w.Response(request_id, w.STATUS_ERROR, ext_length=len(ext))) + ext)

    async def _dispatch(self, head: w.Request, ext: bytes, payload: bytearray) -> tuple[w.Response, Any]:
        op = self.op
        if head.op == w.OP_READ:
            if ext or payload:
                raise InvalidArgument("a READ frame carries no ext or payload")
            request = storage_pb2.ReadRequest(
                chain_id=head.chain_id, chain_version=head.chain_version,
                chunk=storage_pb2.ChunkId(inode_id=head.inode_id, chunk_index=head.chunk_index),
                offset=head.offset, length=head.length, target_id=head.target_id)
            data, crc, meta = await op.read_data(request)
            flags = w.FLAG_EXISTS if meta.exists else 0
            return w.Response(head.request_id, flags=flags, commit_version=meta.commit_version,
                              chunk_length=meta.length, crc32c=crc), data
        if head.op in (w.OP_WRITE, w.OP_FORWARD):
            try:
                update = decode_update(head, ext, bytes(payload))
            except Exception as exc:  # protobuf's DecodeError and friends
                raise InvalidArgument(f"the frame's request header does not parse: {exc}") from None
            if head.op == w.OP_WRITE:
                reply = await op.write(update)
            else:
                reply = await op.forward(storage_pb2.ForwardRequest(
                    update=update, update_version=head.update_version, from_target=head.from_target,
                    to_target=head.target_id))
            return w.Response(head.request_id, commit_version=reply.commit_version,
                              chunk_length=reply.chunk_length, crc32c=reply.chunk_crc32c), b""
        raise InvalidArgument(f"unknown bulk op {head.op}")

    def _arm_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
        self._stall = asyncio.get_running_loop().call_later(self.server.stall_s, self._check_stall)

    def _check_stall(self) -> None:
        mid_frame = self._payload is not None or self._end > self._start
        if mid_frame:
            self._refuse_stream(f"peer sent part of a frame and nothing for {self.server.stall_s:g} s")
        elif not self._greeted and self.transport is not None:
            log.warning("bulk connection from %s closed: no hello in %g s", self._peer(), self.server.stall_s)
            self.transport.close()
