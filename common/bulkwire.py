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

A request's ext: for a client's READ, READV and WRITE, `u16 capability length,
capability` (common/capability.py; length 0 without tokens) then, for a WRITE, the
serialized RequestHeader (`pack_client_ext` / `split_client_ext`); a READ or READV may
also send an empty ext (no capability). For a peer's FORWARD, the serialized
RequestHeader alone (the server token authorises it).

READV reads many pieces of one inode on one target (the header's chain id, chain
version, inode id and target id apply to all of them). Its payload is one
`u32 chunk index, u32 offset, u32 length` per piece (at most MAX_READV_READS pieces,
MAX_READV_BYTES asked in all). Its answer is one OK frame whose payload is a result per
piece (READV_RESULT: status, flags, error length, chunk length, commit version, the
CRC32C of exactly the bytes returned, their length), then the error texts of the
failed pieces, then the pieces' bytes, all in request order. A piece's failure is that
piece's error; only a frame the server cannot take at all (a bad capability, a bad
piece table) gets an error frame.

READVM reads pieces of many inodes on one target (the header's chain id, chain version
and target id apply to all; its inode id is 0). Its ext is the file table: `u16 count`,
then per file `u64 inode id, u16 capability length, capability` (1 to MAX_READV_FILES
distinct inodes); its payload one `u32 file index, u32 chunk index, u32 offset,
u32 length` per piece, under READV's limits; its answer is READV's. A file whose
capability is refused fails its own pieces only.

Neither changed the frame layout, so VERSION did not: a server that predates an op
answers it as any unknown op (InvalidArgument) and the client reads those pieces alone.

A malformed header (bad magic, lengths past the caps) cannot be skipped safely, so
the peer answers with an error frame where it can and closes the connection; an
unknown op or a refused request only gets its error frame, and the connection goes on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "FRAME_MAGIC",
    "HELLO",
    "HELLO_MAGIC",
    "MAX_CAPABILITY",
    "MAX_EXT",
    "MAX_PAYLOAD",
    "MAX_TOKEN",
    "OP_FORWARD",
    "MAX_READV_BYTES",
    "MAX_READV_ERROR",
    "MAX_READV_FILES",
    "MAX_READV_READS",
    "OP_NAMES",
    "OP_READ",
    "OP_READV",
    "OP_READVM",
    "OP_WRITE",
    "REQUEST",
    "READV_READ",
    "READVM_READ",
    "READV_RESULT",
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
    "ReadvResult",
    "Response",
    "decode_error",
    "encode_error",
    "split_client_ext",
    "pack_client_ext",
    "pack_hello",
    "pack_readv_files",
    "pack_readv_reads",
    "pack_readvm_reads",
    "pack_readv_results",
    "pack_request",
    "pack_response",
    "unpack_hello",
    "unpack_readv_files",
    "unpack_readv_reads",
    "unpack_readvm_reads",
    "unpack_readv_results",
    "unpack_request",
    "unpack_response",
]

VERSION = 2  # 2: READ/WRITE ext carries the capability (issue 16)
HELLO_MAGIC = b"EMBF"
FRAME_MAGIC = 0xEB1F  # first two bytes of every frame: a desynchronised stream shows at once

OP_READ = 1
OP_WRITE = 2  # a client's update at the chain head (storage_pb2.WriteRequest)
OP_FORWARD = 3  # a chain peer's update (storage_pb2.ForwardRequest)
OP_READV = 4  # many small reads of one inode on one target, one answer
OP_READVM = 5  # many small reads of many inodes on one target, one answer
OP_NAMES = {OP_READ: "READ", OP_WRITE: "WRITE", OP_FORWARD: "FORWARD", OP_READV: "READV", OP_READVM: "READVM"}

STATUS_OK = 0
STATUS_ERROR = 1
STATUS_UNAUTHENTICATED = 2  # server hello only: the token is missing or not valid (then it closes)
FLAG_EXISTS = 1  # response flag: the chunk exists (a read of a hole has it clear)

MAX_PAYLOAD = 64 * 1024 * 1024 + 64 * 1024  # the largest chunk plus slack, as gRPC's cap
MAX_EXT = 64 * 1024
MAX_TOKEN = 4096
MAX_READV_READS = 1024
MAX_READV_BYTES = 32 * 1024 * 1024  # asked by one READV: its answer stays below MAX_PAYLOAD
MAX_READV_ERROR = 1024  # one piece's error text
MAX_READV_FILES = 256  # inodes in one READVM: its file table stays well inside MAX_EXT
MAX_CAPABILITY = 160  # one file's capability in a READVM (common/capability.py's are 54 bytes)

HELLO = struct.Struct("<4sHHI")
# magic, op, kind, request id, chain id, chunk index, chain version, inode id,
# offset, length, crc32c, chunk size, target id, update version, from target,
# ext length, payload length
REQUEST = struct.Struct("<HBBQIIQQIIIIQQQII")
# magic, status, flags, request id, commit version, chunk length, crc32c,
# ext length, payload length
RESPONSE = struct.Struct("<HBBQQIIII")
READV_READ = struct.Struct("<III")  # chunk index, offset, length
READVM_READ = struct.Struct("<IIII")  # file index, chunk index, offset, length
READVM_FILE = struct.Struct("<QH")  # inode id, capability length (the capability follows)
# status, flags, error length, chunk length, commit version, crc32c, data length
READV_RESULT = struct.Struct("<BBHIQII")


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
_FILE_COUNT = struct.Struct("<H")


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


def encode_error(code: str, message: str, limit: int = MAX_EXT) -> bytes:
    """An error frame's ext (or a READV piece's error): the EmberError code and its
    message, cut to `limit` bytes."""
    body = f"{code}\n{message}".encode("utf-8", "replace")
    if len(body) <= limit:
        return body
    # Cut on a character boundary: a split one would decode as garbage.
    return body[:limit].decode("utf-8", "ignore").encode("utf-8")


def decode_error(ext: bytes | memoryview) -> tuple[str, str]:
    code, _, message = bytes(ext).decode("utf-8", "replace").partition("\n")
    return code, message


# -- READV bodies -------------------------------------------------------------------------


@dataclass(slots=True)
class ReadvResult:
    """One piece of a READV answer: what a READ's response header and payload would say."""

    status: int = STATUS_OK
    flags: int = 0
    commit_version: int = 0
    chunk_length: int = 0
    crc32c: int = 0  # of `data`, exactly
    data: bytes | bytearray | memoryview = b""
    error: bytes = b""  # a failed piece: encode_error's "code\nmessage"

    @property
    def exists(self) -> bool:
        return bool(self.flags & FLAG_EXISTS)


def pack_readv_reads(reads: Sequence[tuple[int, int, int]]) -> bytes:
    """A READV payload: (chunk index, offset, length) per piece."""
    return b"".join(READV_READ.pack(*read) for read in reads)


def unpack_readv_reads(payload: bytes | memoryview) -> list[tuple[int, int, int]]:
    """The pieces of a READV payload; ValueError when it is malformed or over a limit."""
    size = READV_READ.size
    if not payload or len(payload) % size:
        raise ValueError(f"a READV payload is a non-empty list of {size}-byte reads, not {len(payload)} bytes")
    if len(payload) > MAX_READV_READS * size:
        raise ValueError(f"a READV asks for {len(payload) // size} reads; the limit is {MAX_READV_READS}")
    reads = list(READV_READ.iter_unpack(payload))
    asked = sum(length for _, _, length in reads)
    if asked > MAX_READV_BYTES:
        raise ValueError(f"a READV asks for {asked} bytes; the limit is {MAX_READV_BYTES}")
    return reads


def pack_readv_files(files: Sequence[tuple[int, bytes]]) -> bytes:
    """A READVM's ext: the file table, (inode id, capability) per file."""
    return _FILE_COUNT.pack(len(files)) + b"".join(
        READVM_FILE.pack(inode_id, len(capability)) + capability for inode_id, capability in files)


def unpack_readv_files(ext: bytes | memoryview) -> list[tuple[int, bytes]]:
    """The file table of a READVM's ext; ValueError when it is malformed or over a limit."""
    view = memoryview(ext).cast("B")
    if len(view) < _FILE_COUNT.size:
        raise ValueError(f"a READVM file table of {len(view)} bytes has no count")
    (count,) = _FILE_COUNT.unpack_from(view)
    if not 1 <= count <= MAX_READV_FILES:
        raise ValueError(f"a READVM names {count} files; it names 1 to {MAX_READV_FILES}")
    files: list[tuple[int, bytes]] = []
    at = _FILE_COUNT.size
    for _ in range(count):
        if at + READVM_FILE.size > len(view):
            raise ValueError(f"a READVM file table of {len(view)} bytes ends inside file {len(files)}")
        inode_id, length = READVM_FILE.unpack_from(view, at)
        at += READVM_FILE.size
        if length > MAX_CAPABILITY or at + length > len(view):
            raise ValueError(f"file {len(files)} of a READVM announces a capability of {length} bytes")
        files.append((inode_id, bytes(view[at:at + length])))
        at += length
    if at != len(view):
        raise ValueError(f"a READVM file table has {len(view) - at} bytes past its {count} files")
    if len({inode_id for inode_id, _ in files}) != count:
        raise ValueError("a READVM names an inode twice")
    return files


def pack_readvm_reads(reads: Sequence[tuple[int, int, int, int]]) -> bytes:
    """A READVM payload: (file index, chunk index, offset, length) per piece."""
    return b"".join(READVM_READ.pack(*read) for read in reads)


def unpack_readvm_reads(payload: bytes | memoryview, files: int) -> list[tuple[int, int, int, int]]:
    """The pieces of a READVM payload whose file table names `files` files; ValueError
    when it is malformed, over a limit, or names a file past the table."""
    size = READVM_READ.size
    if not payload or len(payload) % size:
        raise ValueError(f"a READVM payload is a non-empty list of {size}-byte reads, not {len(payload)} bytes")
    if len(payload) > MAX_READV_READS * size:
        raise ValueError(f"a READVM asks for {len(payload) // size} reads; the limit is {MAX_READV_READS}")
    reads = list(READVM_READ.iter_unpack(payload))
    asked = sum(read[3] for read in reads)
    if asked > MAX_READV_BYTES:
        raise ValueError(f"a READVM asks for {asked} bytes; the limit is {MAX_READV_BYTES}")
    worst = max(read[0] for read in reads)
    if worst >= files:
        raise ValueError(f"a READVM piece names file {worst} of a table of {files}")
    return reads


def pack_readv_results(results: Sequence[ReadvResult]) -> bytes:
    """A READV answer's payload: the result table, the error texts, the bytes."""
    table = b"".join(
        READV_RESULT.pack(r.status, r.flags, len(r.error), r.chunk_length, r.commit_version, r.crc32c, len(r.data))
        for r in results)
    return b"".join([table, *(r.error for r in results if r.error), *(r.data for r in results if len(r.data))])


def unpack_readv_results(payload: bytes | bytearray | memoryview, count: int) -> list[ReadvResult]:
    """The `count` results of a READV answer, their data views of `payload`; ValueError
    when the payload does not hold exactly that many well-formed results."""
    view = memoryview(payload).cast("B")
    table_end = count * READV_RESULT.size
    if len(view) < table_end:
        raise ValueError(f"a READV answer of {len(view)} bytes is too short for {count} results")
    rows = list(READV_RESULT.iter_unpack(view[:table_end])) if count else []
    errors_end = table_end + sum(row[2] for row in rows)
    if errors_end + sum(row[6] for row in rows) != len(view):
        raise ValueError(f"a READV answer of {len(view)} bytes does not match its result table")
    results, error_at, data_at = [], table_end, errors_end
    for status, flags, error_length, chunk_length, commit_version, crc, data_length in rows:
        # A piece has bytes or an error, never both; a failure always says why.
        if not ((status == STATUS_OK and not error_length) or (status == STATUS_ERROR and error_length
                                                                and not data_length)):
            raise ValueError(f"a READV result with status {status}, {error_length} error and "
                             f"{data_length} data bytes")
        results.append(ReadvResult(status, flags, commit_version, chunk_length, crc,
                                   view[data_at:data_at + data_length],
                                   bytes(view[error_at:error_at + error_length])))
        error_at += error_length
        data_at += data_length
    return results


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
