"""What every bulk-channel test shares: the cluster's settings, where ORIGINAL lives
(`Spot`), a raw peer that writes the wire format by hand, frame splitting, and the
check every test ends with (`assert_serves`: the head still serves ORIGINAL over a
fresh connection).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

import crc32c

from emberfs.client._launch import ServerProcess
from emberfs.common import bulkwire as w
from emberfs.proto import common_pb2, storage_pb2

STALL_S = 1.0  # --bulk-stall-timeout of both storage servers
PROMPT_S = STALL_S / 2  # a refusal must come sooner than this: not by the stall timer
CHUNK = 64 * 1024
PATH = "/original"
ORIGINAL = random.Random(8).randbytes(40_000)  # chunk 0 of PATH, shorter than a chunk
SCRATCH_INODE = 0xB01C_0000_0000  # chunks no file owns, for writes that must succeed


def run(coro: Any, timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Spot:
    """Where ORIGINAL's chunk lives: the chain head's bulk address and the chunk's ids."""

    bulk: str
    chain_id: int
    chain_version: int
    inode_id: int

    def read(self, request_id: int, offset: int = 0, length: int = len(ORIGINAL), **fields: int) -> w.Request:
        head = w.Request(w.OP_READ, request_id, chain_id=self.chain_id, chain_version=self.chain_version,
                         inode_id=self.inode_id, chunk_index=0, offset=offset, length=length)
        return dataclasses.replace(head, **fields)

    def write(self, request_id: int, data: bytes, **fields: int) -> tuple[w.Request, bytes]:
        """A WRITE frame's header (CRC32C of data) and its ext, for ORIGINAL's chunk unless overridden."""
        head = w.Request(w.OP_WRITE, request_id, kind=storage_pb2.WRITE, chain_id=self.chain_id,
                         chain_version=self.chain_version, inode_id=self.inode_id, chunk_index=0,
                         crc32c=crc32c.crc32c(data), chunk_size=CHUNK)
        header = common_pb2.RequestHeader(client_id=uuid.uuid4().hex, request_id=request_id).SerializeToString()
        return dataclasses.replace(head, **fields), w.pack_client_ext(b"", header)  # no tokens: no capability


@dataclass
class BulkCluster:
    meta: ServerProcess
    nodes: list[ServerProcess]
    spot: Spot
    head_pid: int


# -- a raw peer ---------------------------------------------------------------------------


class Answer(NamedTuple):
    head: w.Response
    ext: bytes
    payload: bytes

    @property
    def code(self) -> str:
        return w.decode_error(self.ext)[0]


class Peer:
    """A raw TCP connection to a bulk port; the test writes the wire format by hand."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def greet(self, version: int = w.VERSION, token: bytes = b"") -> tuple[w.Hello, str]:
        self.send(w.pack_hello(version, 0, token))
        hello = w.unpack_hello(self.exactly(w.HELLO.size), max_body=w.MAX_EXT)
        return hello, self.exactly(hello.body_length).decode()

    def request(self, head: w.Request, ext: bytes = b"", payload: bytes = b"") -> None:
        head.ext_length, head.payload_length = len(ext), len(payload)
        self.send(w.pack_request(head) + ext + payload)

    def answer(self) -> Answer:
        head = w.unpack_response(self.exactly(w.RESPONSE.size))
        ext = self.exactly(head.ext_length)
        return Answer(head, ext, self.exactly(head.payload_length))

    def exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            got = self.sock.recv(n - len(out))
            if not got:
                raise EOFError(f"the server closed the connection after {len(out)} of {n} bytes")
            out += got
        return bytes(out)

    def rest_until_closed(self, within: float) -> tuple[bytes, float]:
        """What the server still sends before it closes, and when it closed (time.monotonic)."""
        start = time.monotonic()
        data = bytearray()
        while True:
            left = start + within - time.monotonic()
            assert left > 0, f"the server kept the connection open for {within:g} s"
            self.sock.settimeout(left)
            try:
                got = self.sock.recv(1 << 16)
            except ConnectionResetError:
                got = b""
            except TimeoutError:
                continue
            if not got:
                return bytes(data), time.monotonic()
            data += got


def frames(data: bytes) -> list[Answer]:
    """Split a stream of whole response frames (AssertionError on a cut or broken one)."""
    out, at = [], 0
    while at < len(data):
        assert len(data) - at >= w.RESPONSE.size, f"a cut frame header: {data[at:]!r}"
        head = w.unpack_response(data[at:at + w.RESPONSE.size])
        ext_at = at + w.RESPONSE.size
        end = ext_at + head.ext_length + head.payload_length
        assert end <= len(data), "a cut frame"
        out.append(Answer(head, data[ext_at:ext_at + head.ext_length], data[ext_at + head.ext_length:end]))
        at = end
    return out


def greeted(address: str) -> Peer:
    peer = Peer(address)
    hello, message = peer.greet()
    assert (hello.version, hello.field) == (w.VERSION, w.STATUS_OK), message
    return peer


def assert_serves(bulk: BulkCluster) -> None:
    """The head answers a READ of ORIGINAL on a fresh connection with the original bytes."""
    assert all(p.running for p in bulk.nodes), "a storage server exited"
    with greeted(bulk.spot.bulk) as peer:
        peer.request(bulk.spot.read(1))
        answer = peer.answer()
    assert answer.head.status == w.STATUS_OK, w.decode_error(answer.ext)
    assert answer.head.request_id == 1 and answer.head.flags & w.FLAG_EXISTS
    assert answer.payload == ORIGINAL
    assert (answer.head.chunk_length, answer.head.crc32c) == (len(ORIGINAL), crc32c.crc32c(ORIGINAL))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def lying_header(head: w.Request, **lengths: int) -> bytes:
    """A request header whose lengths (or magic) lie; pack_request does not check them."""
    magic = lengths.pop("magic", w.FRAME_MAGIC)
    data = bytearray(w.pack_request(dataclasses.replace(head, **lengths)))
    struct.pack_into("<H", data, 0, magic)
    return bytes(data)

