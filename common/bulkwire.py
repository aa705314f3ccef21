"""The bulk data channel's wire format. Pure: bytes in, values out, no I/O.

Chunk payloads (client reads and writes, chain forwards, resync transfers) travel on
a length-prefixed binary protocol over TCP beside each storage server's gRPC port;
control stays on gRPC (docs/ARCHITECTURE.md, "On the wire"). All integers are little-endian.

A connection opens with a hello each way:

    client: magic "EMBF", u16 version, u16 flags, u32 token length, token bytes
    server: magic "EMBF", u16 version, u16 status (0 ok), u32 message length, message

(a server with tokens answers a missing or unknown token with STATUS_UNAUTHENTICATED
and closes; one without tokens ignores the token)

then carries pipelined requests, answered in any order and matched by request id:

    request  = REQUEST header (84 bytes) + ext + payload
    response = RESPONSE header (36 bytes) + ext (an error: code "\\n" message) + payload

A request's ext: for a client's READ and WRITE, `u16 capability length, capability`
(common/capability.py; length 0 without tokens) then, for a WRITE, the serialized
RequestHeader (`pack_client_ext` / `split_client_ext`); a READ may also send an empty
ext (no capability). For a peer's FORWARD, the serialized RequestHeader alone (the
server token authorises it).

A malformed header (bad magic, lengths past the caps) cannot be skipped safely, so
the peer answers with an error frame where it can and closes the connection; an
unknown op or a refused request only gets its error frame, and the connection goes on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "FRAME_MAGIC",
    "HELLO",
    "HELLO_MAGIC",
    "MAX_EXT",
    "MAX_PAYLOAD",
    "MAX_TOKEN",
    "OP_FORWARD",
    "OP_NAMES",
    "OP_READ",
    "OP_WRITE",
    "REQUEST",
    "RESPONSE",
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_UNAUTHENTICATED",
    "VERSION",
    "FLAG_EXISTS",
    "FrameError",
    "Stage",
    "Hello",
    "Request",
    "Response",
    "decode_error",
    "encode_error",
    "split_client_ext",
    "pack_client_ext",
    "pack_hello",
    "pack_request",
    "pack_response",
    "unpack_hello",
    "unpack_request",
    "unpack_response",
]

VERSION = 2  # 2: READ/WRITE ext carries the capability (issue 16)
HELLO_MAGIC = b"EMBF"
FRAME_MAGIC = 0xEB1F  # first two bytes of every frame: a desynchronised stream shows at once

OP_READ = 1
OP_WRITE = 2  # a client's update at the chain head (storage_pb2.WriteRequest)
OP_FORWARD = 3  # a chain peer's update (storage_pb2.ForwardRequest)
OP_NAMES = {OP_READ: "READ", OP_WRITE: "WRITE", OP_FORWARD: "FORWARD"}

STATUS_OK = 0
STATUS_ERROR = 1
STATUS_UNAUTHENTICATED = 2  # server hello only: the token is missing or not valid (then it closes)
FLAG_EXISTS = 1  # response flag: the chunk exists (a read of a hole has it clear)

MAX_PAYLOAD = 64 * 1024 * 1024 + 64 * 1024  # the largest chunk plus slack, as gRPC's cap
MAX_EXT = 64 * 1024
MAX_TOKEN = 4096

HELLO = struct.Struct("<4sHHI")
# magic, op, kind, request id, chain id, chunk index, chain version, inode id,
# offset, length, crc32c, chunk size, target id, update version, from target,
# ext length, payload length
REQUEST = struct.Struct("<HBBQIIQQIIIIQQQII")
# magic, status, flags, request id, commit version, chunk length, crc32c,
# ext length, payload length
RESPONSE = struct.Struct("<HBBQQIIII")


H = TypeVar("H")


class FrameError(ValueError):
    """A frame or hello that breaks the protocol; the connection cannot go on."""


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    field: int  # flags from a client, status from a server
    body_length: int  # token (client) or message (server) bytes that follow


@dataclass(slots=True)
class Request:
    op: int
    request_id: int
    kind: int = 0
    chain_id: int = 0
    chunk_index: int = 0
    chain_version: int = 0
    inode_id: int = 0
    offset: int = 0
    length: int = 0
    crc32c: int = 0
    chunk_size: int = 0
    target_id: int = 0
    update_version: int = 0
    from_target: int = 0
    ext_length: int = 0
    payload_length: int = 0


@dataclass(slots=True)
class Response:
    request_id: int
    status: int = STATUS_OK
    flags: int = 0
    commit_version: int = 0
    chunk_length: int = 0
    crc32c: int = 0
    ext_length: int = 0
    payload_length: int = 0


def pack_hello(version: int, field: int, body: bytes) -> bytes:
    return HELLO.pack(HELLO_MAGIC, version, field, len(body)) + body


def unpack_hello(data: bytes | bytearray | memoryview, *, max_body: int) -> Hello:
    magic, version, field, length = HELLO.unpack(data)
    if magic != HELLO_MAGIC:
        raise FrameError("not an EmberFS bulk channel (bad hello magic)")
    if length > max_body:
        raise FrameError(f"hello body of {length} bytes exceeds {max_body}")
    return Hello(version, field, length)


def pack_request(r: Request) -> bytes:
    return REQUEST.pack(
        FRAME_MAGIC, r.op, r.kind, r.request_id, r.chain_id, r.chunk_index, r.chain_version, r.inode_id,
        r.offset, r.length, r.crc32c, r.chunk_size, r.target_id, r.update_version, r.from_target,
        r.ext_length, r.payload_length,
    )


def unpack_request(data: bytes | memoryview) -> Request:
    """A request header; FrameError when it cannot be trusted to find the next frame."""
    (magic, op, kind, request_id, chain_id, chunk_index, chain_version, inode_id, offset, length, crc,
     chunk_size, target_id, update_version, from_target, ext_length, payload_length) = REQUEST.unpack(data)
    if magic != FRAME_MAGIC:
        raise FrameError(f"bad frame magic 0x{magic:04x}")
    _check_lengths(ext_length, payload_length)
    return Request(op, request_id, kind, chain_id, chunk_index, chain_version, inode_id, offset, length, crc,
                   chunk_size, target_id, update_version, from_target, ext_length, payload_length)


def pack_response(r: Response) -> bytes:
    return RESPONSE.pack(FRAME_MAGIC, r.status, r.flags, r.request_id, r.commit_version, r.chunk_length,
                         r.crc32c, r.ext_length, r.payload_length)


def unpack_response(data: bytes | memoryview) -> Response:
    magic, status, flags, request_id, commit_version, chunk_length, crc, ext_length, payload_length = (
        RESPONSE.unpack(data))
    if magic != FRAME_MAGIC:
        raise FrameError(f"bad frame magic 0x{magic:04x}")
    if status not in (STATUS_OK, STATUS_ERROR):
        raise FrameError(f"unknown response status {status}")
    _check_lengths(ext_length, payload_length)
    return Response(request_id, status, flags, commit_version, chunk_length, crc, ext_length, payload_length)


def _check_lengths(ext_length: int, payload_length: int) -> None:
    if ext_length > MAX_EXT:
        raise FrameError(f"frame extension of {ext_length} bytes exceeds {MAX_EXT}")
    if payload_length > MAX_PAYLOAD:
        raise FrameError(f"frame payload of {payload_length} bytes exceeds {MAX_PAYLOAD}")


_CAP_LENGTH = struct.Struct("<H")


def pack_client_ext(capability: bytes, rest: bytes = b"") -> bytes:
    """A READ/WRITE ext: the capability, length-prefixed, then `rest` (a WRITE's header)."""
    return _CAP_LENGTH.pack(len(capability)) + capability + rest


def split_client_ext(ext: bytes) -> tuple[bytes, bytes]:
    """(capability, rest) of a READ/WRITE ext; ValueError if the prefix lies. An empty
    ext is no capability and nothing else (a READ from a client without tokens)."""
    if not ext:
        return b"", b""
    if len(ext) < _CAP_LENGTH.size:
        raise ValueError(f"ext of {len(ext)} bytes is too short for its capability length")
    (length,) = _CAP_LENGTH.unpack_from(ext)
    end = _CAP_LENGTH.size + length
    if end > len(ext):
        raise ValueError(f"capability of {length} bytes announced, {len(ext) - _CAP_LENGTH.size} present")
    return bytes(ext[_CAP_LENGTH.size:end]), bytes(ext[end:])


def encode_error(code: str, message: str) -> bytes:
    """An error frame's ext: the EmberError code and its message (cut to fit)."""
    body = f"{code}\n{message}".encode("utf-8", "replace")
    if len(body) <= MAX_EXT:
        return body
    # Cut on a character boundary: a split one would decode as garbage.
    return body[:MAX_EXT].decode("utf-8", "ignore").encode("utf-8")


def decode_error(ext: bytes | memoryview) -> tuple[str, str]:
    code, _, message = bytes(ext).decode("utf-8", "replace").partition("\n")
    return code, message


class Stage:
    """Received bytes not parsed yet, for a `BufferedProtocol`: the socket fills
    `free()`, `filled(n)` counts them, and the parser takes whole pieces off the front.
    The buffer is compacted as it drains, never grown; a view from `take` is valid
    until the next `free()`."""

    def __init__(self, size: int) -> None:
        self._buf = bytearray(size)
        self._start = self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def free(self) -> memoryview:
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._buf) - self._end < 4096:
            kept = self._end - self._start
            self._buf[:kept] = self._buf[self._start:self._end]
            self._start, self._end = 0, kept
        return memoryview(self._buf)[self._end:]

    def filled(self, nbytes: int) -> None:
        self._end += nbytes

    def take(self, nbytes: int) -> memoryview:
        """Up to `nbytes` from the front (fewer if fewer arrived), consumed."""
        n = min(nbytes, len(self))
        view = memoryview(self._buf)[self._start:self._start + n]
        self._start += n
        return view

    def hello(self, *, max_body: int) -> tuple[Hello, bytes] | None:
        """A whole hello and its body, consumed; None until it has arrived."""
        if len(self) < HELLO.size:
            return None
        hello = unpack_hello(self._buf[self._start:self._start + HELLO.size], max_body=max_body)
        if len(self) < HELLO.size + hello.body_length:
            return None
        self._start += HELLO.size
        return hello, bytes(self.take(hello.body_length))

    def head(self, header: struct.Struct, unpack: Callable[[Any], H]) -> tuple[H, bytes] | None:
        """A whole frame header and its ext, consumed (the payload stays); None until
        both have arrived. FrameError: a header that cannot be trusted."""
        if len(self) < header.size:
            return None
        head = unpack(self._buf[self._start:self._start + header.size])
        need = header.size + head.ext_length  # type: ignore[attr-defined]
        if need > len(self._buf):
            raise FrameError("frame header and ext larger than the staging buffer")
        if len(self) < need:
            return None
        self._start += header.size
        return head, bytes(self.take(head.ext_length))  # type: ignore[attr-defined]
