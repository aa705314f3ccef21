"""Hypothesis against a live storage server's bulk port (issue 8, "Bad input": fuzz the
frame parser), on a one-node cluster holding ORIGINAL, written before any fuzzing.

- Well-formed frames with random fields (op, kind, ids, versions, offsets, lengths,
  CRC, ext, payload): each gets exactly one answer with its request id, never
  "Internal" (an exception the server did not expect), and the same connection then
  still reads ORIGINAL.
- Broken streams (random bytes instead of a hello or after one, valid frames with
  bytes overwritten, lengths that lie, cut anywhere): the server answers only whole
  frames, never "Internal", and closes the connection once the peer has finished
  sending.

Both run against a server on the standard event loop and on uvloop. After each run:
the server process is alive, ORIGINAL reads back unchanged through a bulk client, and
neither the server's RSS nor its peak RSS grew by RSS_SLACK. The number of examples
run is printed (visible without -s).
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emberfs.client import Client
from emberfs.client._launch import LocalCluster
from emberfs.common import bulkwire as w
from emberfs.common import eventloop
from emberfs.common.errors import error_for_code
from emberfs.common.routing import RoutingView
from emberfs.proto import common_pb2

pytestmark = pytest.mark.timeout(180)

CHUNK = 64 * 1024
PATH = "/original"
ORIGINAL = random.Random(80).randbytes(2 * CHUNK + 5000)  # three chunks
SCRATCH_INODE = 0xF022_0000_0000  # chunks no file owns: a fuzzed write may land here
RSS_SLACK = 200 * 2**20
EXAMPLES = 200  # per test and event loop
# The storage server's event loop: the bulk server runs on the standard loop's transports or uvloop's.
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (emberfs[fast])"))]
RUN: Counter[tuple[str, str]] = Counter()  # examples run, by (test, event loop)

U8, U32, U64 = (st.integers(0, 2**bits - 1) for bits in (8, 32, 64))


@dataclass
class Target:
    cluster: LocalCluster
    bulk: str
    chain_id: int
    chain_version: int
    inode_id: int
    pid: int
    loop: str  # the storage server's event loop
    memory_before: tuple[int, int]

    def read(self, request_id: int, chunk_index: int = 0) -> tuple[w.Request, bytes]:
        """A READ of one of ORIGINAL's chunks, and the bytes it must return."""
        expect = ORIGINAL[chunk_index * CHUNK:(chunk_index + 1) * CHUNK]
        return w.Request(w.OP_READ, request_id, chain_id=self.chain_id, chain_version=self.chain_version,
                         inode_id=self.inode_id, chunk_index=chunk_index, length=CHUNK), expect


@pytest.fixture(scope="module", params=LOOPS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    cluster = LocalCluster(tmp_path_factory.mktemp("bulkfuzz"), nodes=1, replicas=1, chunk_size=CHUNK)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(eventloop.ENV, request.param)  # inherited by the servers the cluster starts
        cluster.start(timeout=60)
    try:
        found = asyncio.run(asyncio.wait_for(_write_original(cluster.meta_address), 30))
        yield _target(cluster, found, request.param)
    finally:
        cluster.stop()


async def _write_original(meta: str) -> tuple[Any, RoutingView]:
    async with Client(meta, uid=0, gid=0, groups=[], transport="bulk") as fs:
        await fs.write_file(PATH, ORIGINAL)
        assert await fs.read_file(PATH) == ORIGINAL  # warms the server up before its RSS is taken
        return await fs.stat(PATH), RoutingView(await fs.routing())


def _target(cluster: LocalCluster, found: tuple[Any, RoutingView], loop: str) -> Target:
    stat, view = found
    assert len(set(stat.chain_ids)) == 1, "ORIGINAL's chunks should sit on one chain"
    chain = view.chain(stat.chain_ids[0])
    assert chain.head is not None and view.bulk_address_of(chain.head)
    pid = cluster.storage[0].pid
    assert pid is not None
    with open(f"/proc/{pid}/maps") as maps:
        assert ("uvloop" in maps.read()) == (loop == "uvloop"), "the server is not on the loop asked for"
    return Target(cluster, view.bulk_address_of(chain.head), chain.chain_id, chain.chain_version, stat.st_ino,
                  pid, loop, _memory(pid))


def _memory(pid: int) -> tuple[int, int]:
    """The process's resident set now and at its peak (VmRSS, VmHWM), in bytes."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


# -- a raw peer ---------------------------------------------------------------------------


def _connect(address: str, greet: bool = True) -> socket.socket:
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    if greet:
        sock.sendall(w.pack_hello(w.VERSION, 0, b""))
        hello = w.unpack_hello(_exactly(sock, w.HELLO.size), max_body=w.MAX_EXT)
        assert (hello.field, hello.body_length) == (w.STATUS_OK, 0)
    return sock


def _exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        got = sock.recv(n - len(out))
        if not got:
            raise EOFError(f"the server closed the connection after {len(out)} of {n} bytes")
        out += got
    return bytes(out)


def _answer(sock: socket.socket) -> tuple[w.Response, bytes, bytes]:
    head = w.unpack_response(_exactly(sock, w.RESPONSE.size))
    ext = _exactly(sock, head.ext_length)
    return head, ext, _exactly(sock, head.payload_length)


def _until_closed(sock: socket.socket, within: float = 10.0) -> tuple[bytes, bool]:
    """What the server sends until it closes, and whether it closed with a reset (it
    does when it stops reading with bytes unread: what was in flight to us may be lost)."""
    data = bytearray()
    deadline = time.monotonic() + within
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            got = sock.recv(1 << 16)
        except ConnectionResetError:
            return bytes(data), True
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open {within:g} s after the peer's EOF") from None
        if not got:
            return bytes(data), False
        data += got


def _error_codes(data: bytes, *, cut_allowed: bool = False) -> list[str]:
    """The codes of the error frames in data, which must hold whole response frames only
    (the last may be cut when cut_allowed); FrameError if the server sent one it would refuse."""
    codes, at = [], 0
    while at < len(data):
        if len(data) - at < w.RESPONSE.size:
            assert cut_allowed, f"a cut response header at byte {at}"
            break
        head = w.unpack_response(data[at:at + w.RESPONSE.size])
        ext_at = at + w.RESPONSE.size
        at = ext_at + head.ext_length + head.payload_length
        assert at <= len(data) or cut_allowed, "a cut response"
        if head.status == w.STATUS_ERROR and ext_at + head.ext_length <= len(data):
            codes.append(w.decode_error(data[ext_at:ext_at + head.ext_length])[0])
    return codes


def _assert_expected_error(code: str, message: str = "") -> None:
    """An EmberError code the protocol knows, never Internal (an exception the server did not expect)."""
    assert code != "Internal" and error_for_code(code).code == code, (code, message)


def _assert_serves_original(target: Target) -> None:
    assert target.cluster.storage[0].running, target.cluster.storage[0].log_tail()

    async def read() -> bytes:
        async with Client(target.cluster.meta_address, uid=0, gid=0, groups=[], transport="bulk") as fs:
            return await fs.read_file(PATH)

    assert asyncio.run(asyncio.wait_for(read(), 30)) == ORIGINAL


# -- strategies ------------------------------------------------------------------------------


class Frame(NamedTuple):
    head: w.Request
    ext: bytes
    payload: bytes

    def __repr__(self) -> str:  # a 300 KB payload in a failure report helps nobody
        return f"Frame({self.head!r}, ext={self.ext[:64]!r}, payload={len(self.payload)} bytes {self.payload[:16]!r})"


class Stream(NamedTuple):
    greet: bool  # a valid hello first
    data: bytes

    def __repr__(self) -> str:
        return f"Stream(greet={self.greet}, {len(self.data)} bytes: {self.data[:200]!r})"


# Wild values per header field: the boundaries of its wire type, and anything in between.
WILD = {
    "op": st.one_of(st.sampled_from([0, w.OP_READ, w.OP_WRITE, w.OP_FORWARD, w.OP_READV, 5, 255]), U8),
    "kind": st.one_of(st.integers(0, 5), U8),
    "request_id": st.one_of(st.sampled_from([0, 2**64 - 2]), U64),
    "chain_id": st.one_of(st.sampled_from([0, 2, 2**32 - 1]), U32),
    "chunk_index": st.one_of(st.sampled_from([0, 1, 2, 3, 2**32 - 1]), U32),
    "chain_version": st.one_of(st.sampled_from([0, 2, 2**63, 2**64 - 1]), U64),
    "inode_id": st.one_of(st.sampled_from([0, 1, 2**64 - 1]), U64),
    "offset": st.one_of(st.sampled_from([0, CHUNK - 1, CHUNK, 2**26, 2**32 - 1]), U32),
    "length": st.one_of(st.sampled_from([0, 1, CHUNK, CHUNK + 1, 2**26 + 1, 2**32 - 1]), U32),
    "crc32c": U32,
    "chunk_size": st.one_of(st.sampled_from([0, 1, CHUNK // 2, CHUNK - 1, 2 * CHUNK, 2**26, 2**27]), U32),
    "target_id": st.one_of(st.sampled_from([0, 1, 101, 2**64 - 1]), U64),
    "update_version": st.one_of(st.sampled_from([0, 1, 2**64 - 1]), U64),
    "from_target": st.one_of(st.sampled_from([0, 101, 2**64 - 1]), U64),
}
WILD_PAYLOADS = st.one_of(st.binary(max_size=4096), st.sampled_from([CHUNK, CHUNK + 1, 300_000]).map(bytes))
READS = (w.OP_READ, w.OP_READV)  # ops that never change a chunk
WILD_EXTS = st.one_of(st.binary(max_size=300), st.just(b"\n" * 10))
HEADERS = st.builds(common_pb2.RequestHeader, client_id=st.text(max_size=40), request_id=U64, uid=U32)


@st.composite
def frames(draw: st.DrawFn, target: Target) -> Frame:
    """A well-formed frame (true lengths, within the caps): a valid READ, READV, WRITE or
    FORWARD with up to four fields (ext and payload among them) made wild, so that some get
    deep into the operator and some fail each check. Never one that could validly change
    ORIGINAL: any but a READ or READV of its inode is moved to a scratch inode."""
    op = draw(st.sampled_from([w.OP_READ, w.OP_WRITE, w.OP_FORWARD, w.OP_READV]))
    ext, payload = b"", b""
    if op == w.OP_READV:  # (no) capability, then pieces anywhere in and around the chunks
        pieces = st.tuples(st.integers(0, 4), st.integers(0, 2 * CHUNK), st.integers(0, CHUNK + 1))
        ext, payload = w.pack_client_ext(b""), w.pack_readv_reads(draw(st.lists(pieces, min_size=1, max_size=20)))
    elif op == w.OP_WRITE:  # a client update: (no) capability, then its header
        ext, payload = w.pack_client_ext(b"", draw(HEADERS).SerializeToString()), draw(st.binary(max_size=2048))
    elif op == w.OP_FORWARD:
        ext, payload = draw(HEADERS).SerializeToString(), draw(st.binary(max_size=2048))
    head = w.Request(
        op, draw(st.integers(0, 2**64 - 2)), kind=1, chain_id=target.chain_id, chunk_index=draw(st.integers(0, 3)),
        chain_version=target.chain_version, inode_id=target.inode_id if op in READS else SCRATCH_INODE,
        offset=draw(st.integers(0, CHUNK - len(payload))), length=draw(st.integers(0, CHUNK)),
        chunk_size=CHUNK,
    )
    wild = draw(st.lists(st.sampled_from(sorted([*WILD, "ext", "payload"])), max_size=4, unique=True))
    for name in wild:
        if name == "ext":
            ext = draw(WILD_EXTS)
        elif name == "payload":
            payload = draw(WILD_PAYLOADS)
        else:
            setattr(head, name, draw(WILD[name]))
    if "crc32c" not in wild:
        head.crc32c = crc32c.crc32c(payload)
    if head.op not in READS and head.inode_id == target.inode_id:
        head.inode_id = SCRATCH_INODE
    head.request_id = min(head.request_id, 2**64 - 2)  # the check READ after it takes id + 1
    head.ext_length, head.payload_length = len(ext), len(payload)
    return Frame(head, ext, payload)


@st.composite
def broken_streams(draw: st.DrawFn, target: Target) -> Stream:
    """Random bytes (in place of a hello or after one), or a few real frames damaged,
    lying about their lengths and cut anywhere."""
    if draw(st.integers(0, 9)) == 0:
        return Stream(False, draw(st.binary(max_size=200)))
    if draw(st.booleans()):
        return Stream(True, draw(st.binary(min_size=1, max_size=2048)))
    stream = bytearray()
    for _ in range(draw(st.integers(1, 3))):
        head, ext, payload = draw(frames(target))
        head.ext_length = draw(st.one_of(st.just(len(ext)), st.integers(0, w.MAX_EXT + 1), U32))
        head.payload_length = draw(st.one_of(st.just(len(payload)), st.integers(0, w.MAX_PAYLOAD + 1), U32))
        stream += w.pack_request(head) + ext + payload
    for at, byte in draw(st.lists(st.tuples(st.integers(0, len(stream) - 1), U8), max_size=4)):
        stream[at] = byte
    cut = draw(st.one_of(st.just(len(stream)), st.integers(0, len(stream))))
    return Stream(True, bytes(stream[:cut]))


def _report(capsys: pytest.CaptureFixture[str], name: str, target: Target) -> None:
    rss, peak = _memory(target.pid)
    grown, peaked = rss - target.memory_before[0], peak - target.memory_before[1]
    with capsys.disabled():
        print(f"\n{name} ({target.loop}): {RUN[name, target.loop]} fuzz examples; storage server RSS "
              f"{grown / 2**20:+.1f} MiB, peak RSS {peaked / 2**20:+.1f} MiB since the fuzzing began")
    assert RUN[name, target.loop] >= EXAMPLES // 2, f"only {RUN[name, target.loop]} examples ran"
    _assert_serves_original(target)
    assert grown < RSS_SLACK, f"the server's RSS grew by {grown / 2**20:.0f} MiB"
    assert peaked < RSS_SLACK, f"the server's peak RSS grew by {peaked / 2**20:.0f} MiB"


# -- the fuzz tests ------------------------------------------------------------------------------


def test_fuzzed_well_formed_frames_are_each_answered_and_change_nothing(
        target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    name = "well-formed frames"

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])
    @given(frames(target), st.integers(0, 2))
    def one(frame: Frame, chunk_index: int) -> None:
        RUN[name, target.loop] += 1
        head, ext, payload = frame
        check, expect = target.read(head.request_id + 1, chunk_index)
        sock = _connect(target.bulk)
        try:
            sock.sendall(w.pack_request(head) + ext + payload + w.pack_request(check))
            answers = {}
            for _ in range(2):  # answered in any order
                reply, rext, rpayload = _answer(sock)
                assert reply.request_id not in answers, f"two answers to request {reply.request_id}"
                answers[reply.request_id] = (reply, rext, rpayload)
        finally:
            sock.close()
        reply, rext, rpayload = answers[head.request_id]
        if reply.status == w.STATUS_ERROR:
            _assert_expected_error(*w.decode_error(rext))
        elif head.op == w.OP_READV:  # each piece: its bytes with their CRC32C, or an expected error
            for piece in w.unpack_readv_results(rpayload, len(payload) // w.READV_READ.size):
                if piece.status == w.STATUS_ERROR:
                    _assert_expected_error(*w.decode_error(piece.error))
                else:
                    assert piece.crc32c == crc32c.crc32c(piece.data)
        checked, cext, cpayload = answers[check.request_id]
        assert checked.status == w.STATUS_OK and cpayload == expect, w.decode_error(cext)
        assert target.cluster.storage[0].running, target.cluster.storage[0].log_tail()

    one()
    _report(capsys, name, target)


def test_fuzzed_broken_streams_get_whole_frames_then_close(
        target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    name = "broken streams"

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])
    @given(broken_streams(target))
    def one(stream: Stream) -> None:
        RUN[name, target.loop] += 1
        sock = _connect(target.bulk, greet=stream.greet)
        try:
            try:
                sock.sendall(stream.data)
                sock.shutdown(socket.SHUT_WR)  # the server reads every byte, then EOF
            except OSError:  # EPIPE, ECONNRESET, ENOTCONN: it closed first, on a refused header
                pass
            rest, reset = _until_closed(sock)
        finally:
            sock.close()
        if stream.greet:
            for code in _error_codes(rest, cut_allowed=reset):
                _assert_expected_error(code)
        assert target.cluster.storage[0].running, target.cluster.storage[0].log_tail()

    one()
    _report(capsys, name, target)
