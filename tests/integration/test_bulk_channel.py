"""The bulk channel of a real storage server, spoken to byte by byte (issue 8, "Bad input").

A module-scoped cluster, once with the storage servers on the standard event loop and
once on uvloop: a metaserver and two storage servers (one chain of two replicas, 64 KiB
chunks) whose bulk channels cut off a silent peer after STALL_S.
The tests open raw TCP connections to the chain head's bulk port and check what it
answers: a refused request gets its error frame and the connection goes on; a stream
that cannot be trusted (bad hello, bad header, a peer stopped mid-frame) gets an error
frame where possible and is closed promptly, not by the stall timer; nothing a refused
frame carries is written; memory follows the bytes a peer sends, not the ones it
announces or leaves unread; and the server goes on serving, which every test checks at
its end by reading ORIGINAL back over a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import os
import random
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import crc32c
import pytest

from emberfs.client import Client
from emberfs.client._admin import init_chains_sync, wait_cluster_sync
from emberfs.client._launch import ServerProcess, metaserver_process, storage_process
from emberfs.common import bulkwire as w
from emberfs.common import eventloop
from emberfs.common.routing import RoutingView
from emberfs.proto import common_pb2, storage_pb2

pytestmark = pytest.mark.timeout(120)

STALL_S = 1.0  # --bulk-stall-timeout of both storage servers
PROMPT_S = STALL_S / 2  # a refusal must come sooner than this: not by the stall timer
CHUNK = 64 * 1024
PATH = "/original"
ORIGINAL = random.Random(8).randbytes(40_000)  # chunk 0 of PATH, shorter than a chunk
SCRATCH_INODE = 0xB01C_0000_0000  # chunks no file owns, for writes that must succeed
# The storage servers' event loop: the bulk server runs on the standard loop's transports or uvloop's.
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (emberfs[fast])"))]


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


@pytest.fixture(scope="module", params=LOOPS)
def bulk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BulkCluster]:
    root = tmp_path_factory.mktemp("bulk")
    meta = metaserver_process(root / "meta", extra_args=["--default-chunk-size", str(CHUNK),
                                                         "--heartbeat-timeout", "15"])
    nodes: list[ServerProcess] = []
    try:
        address = meta.start(timeout=20)
        for node_id in (1, 2):
            nodes.append(storage_process(root / f"node-{node_id}", meta=address, node_id=node_id,
                                         heartbeat_interval=0.2,
                                         extra_args=["--bulk-stall-timeout", str(STALL_S)]))
            nodes[-1].env = {**os.environ, eventloop.ENV: request.param}
            nodes[-1].start(timeout=20)
        deadline = time.monotonic() + 30
        wait_cluster_sync(address, deadline, nodes=2)
        init_chains_sync(address, 2, deadline)
        wait_cluster_sync(address, deadline, serving=True)
        spot, head_address = run(_write_original(address))
        head_pid = next(p.pid for p in nodes if p.address == head_address)
        assert head_pid is not None
        assert _runs_uvloop(head_pid) == (request.param == "uvloop"), "the server is not on the loop asked for"
        yield BulkCluster(meta, nodes, spot, head_pid)
    finally:
        codes = [(proc, proc.stop(grace=10)) for proc in nodes]
        meta.stop(grace=10)
        for proc, code in codes:  # a clean SIGTERM exit, after all that the tests sent
            assert code == 0, f"storage server exited with {code}:\n{proc.log_tail()}"


async def _write_original(meta: str) -> tuple[Spot, str]:
    async with Client(meta, uid=0, gid=0, groups=[], transport="grpc") as fs:
        await fs.write_file(PATH, ORIGINAL)
        st = await fs.stat(PATH)
        view = RoutingView(await fs.routing())
    chain = view.chain(st.chain_ids[0])
    assert chain.head is not None
    bulk = view.bulk_address_of(chain.head)
    assert bulk, "the chain head's server advertises no bulk address"
    return Spot(bulk, chain.chain_id, chain.chain_version, st.st_ino), view.address_of(chain.head)


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


def _runs_uvloop(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "uvloop" in maps.read()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# -- the hello ----------------------------------------------------------------------------


@pytest.mark.parametrize("hello", [
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
    pytest.param(struct.pack("<4sHHI", b"EMBf", w.VERSION, 0, 0), id="magic-one-bit-off"),
    pytest.param(w.pack_request(w.Request(w.OP_READ, 1)), id="a-request-before-any-hello"),
    pytest.param(struct.pack("<4sHHI", b"EMBF", w.VERSION, 0, w.MAX_TOKEN + 1), id="token-past-the-cap"),
])
def test_bad_hello_is_closed_at_once(bulk: BulkCluster, hello: bytes) -> None:
    with Peer(bulk.spot.bulk) as peer:
        sent = time.monotonic()
        peer.send(hello)
        data, closed = peer.rest_until_closed(within=5)
    took = closed - sent
    assert took < PROMPT_S, f"closed after {took:.2f} s: by the stall timer, not the bad hello"
    assert not data.startswith(w.HELLO_MAGIC), f"a hello came back to a bad one: {data!r}"
    assert_serves(bulk)


@pytest.mark.parametrize("version", [0, w.VERSION + 1, 0xFFFF])
def test_wrong_version_gets_a_refusal_naming_both_versions(bulk: BulkCluster, version: int) -> None:
    with Peer(bulk.spot.bulk) as peer:
        sent = time.monotonic()
        hello, message = peer.greet(version=version, token=b"any token")
        data, closed = peer.rest_until_closed(within=5)
    assert hello.field != w.STATUS_OK and hello.version == w.VERSION
    assert f"version {version}" in message and str(w.VERSION) in message, message
    assert data == b"" and closed - sent < PROMPT_S
    assert_serves(bulk)


# -- refused requests: an error frame, and the connection goes on --------------------------


@pytest.mark.parametrize("op, ext, payload", [
    pytest.param(0, b"", b"", id="op-0"),
    pytest.param(4, b"", b"", id="op-4"),
    pytest.param(255, b"e" * 10, b"p" * 1000, id="op-255-with-ext-and-payload"),
    pytest.param(99, b"", bytes(300_000), id="op-99-payload-past-the-staging-buffer"),
    pytest.param(w.OP_READ, b"x", b"", id="read-with-ext"),
    pytest.param(w.OP_READ, b"", b"y", id="read-with-payload"),
    pytest.param(w.OP_WRITE, b"\xff\xff\xff", b"z", id="write-ext-not-a-request-header"),
])
def test_refused_request_gets_invalid_argument_and_the_connection_goes_on(
        bulk: BulkCluster, op: int, ext: bytes, payload: bytes) -> None:
    with greeted(bulk.spot.bulk) as peer:
        peer.request(bulk.spot.read(7, op=op), ext, payload)
        refused = peer.answer()
        peer.request(bulk.spot.read(8))
        served = peer.answer()
    assert (refused.head.request_id, refused.head.status, refused.code) == (7, w.STATUS_ERROR, "InvalidArgument")
    assert (served.head.request_id, served.head.status, served.payload) == (8, w.STATUS_OK, ORIGINAL)
    assert_serves(bulk)


def test_read_with_a_stale_chain_version_is_refused_with_its_code(bulk: BulkCluster) -> None:
    spot = bulk.spot
    with greeted(spot.bulk) as peer:
        for request_id, version in ((1, spot.chain_version - 1), (2, spot.chain_version + 5)):
            peer.request(spot.read(request_id, chain_version=version))
            answer = peer.answer()
            assert (answer.head.request_id, answer.head.status) == (request_id, w.STATUS_ERROR)
            assert answer.code == "StaleChainVersion", (version, w.decode_error(answer.ext))
    assert_serves(bulk)


def test_write_with_a_wrong_crc_writes_nothing(bulk: BulkCluster) -> None:
    spot, data = bulk.spot, b"Z" * 1000
    with greeted(spot.bulk) as peer:
        head, ext = spot.write(1, data)
        head.crc32c ^= 1
        peer.request(head, ext, data)
        refused = peer.answer()
        # The control: the same frame with its right CRC, on a chunk no file owns, is written.
        head, ext = spot.write(2, data, inode_id=SCRATCH_INODE)
        peer.request(head, ext, data)
        written = peer.answer()
        peer.request(spot.read(3, inode_id=SCRATCH_INODE))
        back = peer.answer()
    assert (refused.head.request_id, refused.head.status, refused.code) == (1, w.STATUS_ERROR, "ChecksumMismatch")
    assert (written.head.status, written.head.commit_version, written.head.chunk_length) == (w.STATUS_OK, 1, 1000)
    assert back.payload == data
    assert_serves(bulk)

    async def read_back() -> bytes:
        async with Client(bulk.meta.address or "", uid=0, gid=0, groups=[], transport="grpc") as fs:
            return await fs.read_file(PATH)

    assert run(read_back()) == ORIGINAL


# -- streams that cannot be trusted: an error frame, then close ----------------------------


def _with(head: w.Request, **lengths: int) -> bytes:
    """A request header whose lengths (or magic) lie; pack_request does not check them."""
    magic = lengths.pop("magic", w.FRAME_MAGIC)
    data = bytearray(w.pack_request(dataclasses.replace(head, **lengths)))
    struct.pack_into("<H", data, 0, magic)
    return bytes(data)


@pytest.mark.parametrize("lie", [
    pytest.param({"magic": 0x1FEB}, id="bad-frame-magic"),
    pytest.param({"ext_length": w.MAX_EXT + 1}, id="ext-past-the-cap"),
    pytest.param({"payload_length": w.MAX_PAYLOAD + 1}, id="payload-past-the-cap"),
    pytest.param({"payload_length": 2**32 - 1}, id="payload-4-GiB"),
])
def test_broken_header_gets_an_error_frame_then_close(bulk: BulkCluster, lie: dict[str, int]) -> None:
    with greeted(bulk.spot.bulk) as peer:
        # A valid READ right behind the broken header must not be served: the stream is lost.
        sent = time.monotonic()
        peer.send(_with(bulk.spot.read(5), **lie) + w.pack_request(bulk.spot.read(6)))
        data, closed = peer.rest_until_closed(within=5)
    took = closed - sent
    answers = frames(data)
    assert [(a.head.request_id, a.head.status, a.code) for a in answers] == [(0, w.STATUS_ERROR, "InvalidArgument")]
    assert took < PROMPT_S, f"closed after {took:.2f} s: by the stall timer, not the broken header"
    assert_serves(bulk)


def _partial_sends(bulk: BulkCluster) -> dict[str, tuple[bool, bytes]]:
    """Partial sends, by name: (greeted first?, the bytes sent before the peer goes silent)."""
    spot = bulk.spot
    head, ext = spot.write(9, bytes(100_000))
    small, small_ext = spot.write(9, bytes(100))
    return {
        "nothing": (False, b""),
        "half-a-hello": (False, w.pack_hello(w.VERSION, 0, b"")[:6]),
        "hello-without-its-token": (False, w.pack_hello(w.VERSION, 0, b"t" * 100)[:w.HELLO.size + 10]),
        "half-a-header": (True, w.pack_request(spot.read(9))[:40]),
        "header-and-half-its-ext": (True, _with(head, ext_length=len(ext), payload_length=100_000) + ext[:5]),
        "part-of-a-small-payload": (True, _with(small, ext_length=len(small_ext), payload_length=100)
                                    + small_ext + bytes(10)),
        "part-of-a-large-payload": (True, _with(head, ext_length=len(ext), payload_length=100_000)
                                    + ext + bytes(20_000)),
    }


def test_a_peer_silent_before_its_hello_or_mid_frame_is_cut_off_after_the_stall_timeout(bulk: BulkCluster) -> None:
    """Every case at once, each on its own connection: the whole test takes one stall."""
    cases = _partial_sends(bulk)
    peers: dict[str, Peer] = {}
    sent: dict[str, float] = {}
    try:
        for name, (greet, data) in cases.items():
            peers[name] = greeted(bulk.spot.bulk) if greet else Peer(bulk.spot.bulk)
            sent[name] = time.monotonic()
            peers[name].send(data)
        with ThreadPoolExecutor(len(peers)) as pool:  # each close is timed as it happens
            rests = pool.map(lambda p: p.rest_until_closed(within=STALL_S + 5), peers.values())
            ends = dict(zip(peers, rests, strict=True))
        for name, (rest, closed) in ends.items():
            took = closed - sent[name]
            assert took > STALL_S * 0.7, f"{name}: closed after {took:.2f} s, before the stall timeout"
            answers = frames(rest)
            if cases[name][0] and cases[name][1]:  # mid-frame after a hello: say why
                assert [(a.head.status, a.code) for a in answers] == [(w.STATUS_ERROR, "InvalidArgument")], name
                assert "nothing for" in w.decode_error(answers[0].ext)[1], name
    finally:
        for peer in peers.values():
            peer.sock.close()
    assert_serves(bulk)


def test_greeted_idle_peer_is_not_cut_off(bulk: BulkCluster) -> None:
    """The stall timeout is for a stopped frame; an idle connection between frames stays."""
    with greeted(bulk.spot.bulk) as peer:
        time.sleep(STALL_S * 1.5)
        peer.request(bulk.spot.read(3))
        assert peer.answer().payload == ORIGINAL


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_peer_gone_mid_payload_writes_nothing(bulk: BulkCluster, reset: bool) -> None:
    """A WRITE that would replace ORIGINAL's first 30000 bytes, its payload cut off a third of the way."""
    data = b"X" * 30_000
    head, ext = bulk.spot.write(1, data)
    peer = greeted(bulk.spot.bulk)
    peer.send(_with(head, ext_length=len(ext), payload_length=len(data)) + ext + data[:10_000])
    if reset:
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.sock.close()
    time.sleep(0.2)  # let the server see the close before the read below
    assert_serves(bulk)


# -- pipelining and the two transports -----------------------------------------------------


def test_pipelined_requests_are_all_answered_by_id(bulk: BulkCluster) -> None:
    """50 requests sent back to back before any answer is read; every 10th is refused."""
    spot = bulk.spot
    expect: dict[int, bytes | None] = {}
    stream = bytearray()
    for i in range(50):
        request_id = 1000 + i * 7919  # ids need not be sequential or small
        if i % 10 == 9:
            head, expect[request_id] = spot.read(request_id, op=77), None
        else:
            offset, length = i * 700, 1 + i * 37
            head = spot.read(request_id, offset=offset, length=length)
            expect[request_id] = ORIGINAL[offset:offset + length]
        stream += w.pack_request(head)
    with greeted(spot.bulk) as peer:
        peer.send(bytes(stream))
        answers = [peer.answer() for _ in expect]
    got = {a.head.request_id: (a.payload if a.head.status == w.STATUS_OK else None) for a in answers}
    assert len(answers) == len(got) == len(expect)
    assert got == expect
    assert_serves(bulk)


def test_a_peer_that_half_closes_still_gets_every_answer(bulk: BulkCluster) -> None:
    """Requests, then shutdown(SHUT_WR): the server answers all of them, then closes."""
    spot = bulk.spot
    stream = b"".join(w.pack_request(spot.read(i, offset=i * 100, length=100)) for i in range(1, 21))
    with greeted(spot.bulk) as peer:
        peer.send(stream)
        peer.sock.shutdown(socket.SHUT_WR)
        rest, _ = peer.rest_until_closed(within=10)
    answers = frames(rest)
    assert sorted(a.head.request_id for a in answers) == list(range(1, 21))
    assert all(a.payload == ORIGINAL[a.head.request_id * 100:a.head.request_id * 100 + 100] for a in answers)
    assert_serves(bulk)


def test_a_burst_the_server_is_slow_to_work_through_is_not_taken_for_a_stalled_peer(bulk: BulkCluster) -> None:
    """300 pipelined 1 KiB WRITEs to one chunk (330 KB), sent at once. Writes to a chunk run
    one at a time, so the server pauses reading at its in-flight cap, likely with part of
    a frame received; that wait is the server's own, not the peer's stopping mid-frame,
    and must not cut the connection however long the backlog takes (more than STALL_S
    when a write takes more than ~5 ms)."""
    spot, stream, n = bulk.spot, bytearray(), 300
    for i in range(1, n + 1):
        data = bytes([i % 251]) * 1024
        head, ext = spot.write(i, data, inode_id=SCRATCH_INODE + 3, offset=(i % 64) * 1024)
        head.ext_length, head.payload_length = len(ext), len(data)
        stream += w.pack_request(head) + ext + data
    started = time.monotonic()
    with greeted(spot.bulk) as peer:
        peer.send(bytes(stream))
        answers: list[Answer] = []
        try:
            while len(answers) < n:
                answers.append(peer.answer())
        except (EOFError, ConnectionResetError):
            pass  # cut off: the answers so far say why
    took = time.monotonic() - started
    errors = [(a.head.request_id, *w.decode_error(a.ext)) for a in answers if a.head.status != w.STATUS_OK]
    assert not errors and len(answers) == n, (
        f"{len(answers)} of {n} answered in {took:.1f} s; errors: {errors[:3]}")
    assert_serves(bulk)


def _bulk_connections(fs: Client) -> list[str]:
    """Addresses the client's bulk pool holds an open connection to (white-box: proves
    that the bulk client did not quietly fall back to gRPC)."""
    pool = fs._storage.bulk
    if pool is None:
        return []
    return [address for address, slots in pool._connections.items() if any(c and not c.closed for c in slots)]


def test_bulk_and_grpc_clients_read_the_same_bytes(bulk: BulkCluster) -> None:
    written = random.Random(9).randbytes(3 * CHUNK + 1234)  # four chunks, the last one short

    async def body() -> None:
        meta = bulk.meta.address or ""
        async with Client(meta, uid=0, gid=0, groups=[], transport="bulk") as fast, \
                Client(meta, uid=0, gid=0, groups=[], transport="grpc") as slow:
            assert await fast.read_file(PATH) == await slow.read_file(PATH) == ORIGINAL
            assert await fast.read_range(PATH, 1000, 5000) == ORIGINAL[1000:6000]
            await fast.write_file("/through-bulk", written)
            assert await slow.read_file("/through-bulk") == written
            assert await fast.read_file("/through-bulk") == written
            assert bulk.spot.bulk in _bulk_connections(fast), "the bulk client wrote to the head over gRPC"
            assert _bulk_connections(slow) == []

    run(body())
    assert_serves(bulk)


# -- memory ------------------------------------------------------------------------------------


def test_announced_payloads_cost_memory_only_as_they_arrive(bulk: BulkCluster) -> None:
    """Eight peers each announce a payload at the cap (64 MiB) and send 1 KiB of it: the
    server must not hold 8 x 64 MiB for 8 x 1 KiB received (a cheap way to exhaust it)."""
    spot, peers = bulk.spot, []
    before = rss_bytes(bulk.head_pid)
    try:
        for i in range(8):
            head, ext = spot.write(i + 1, b"", inode_id=SCRATCH_INODE + 1)
            peer = greeted(spot.bulk)
            peers.append(peer)
            peer.send(_with(head, ext_length=len(ext), payload_length=w.MAX_PAYLOAD) + ext + bytes(1024))
        time.sleep(STALL_S / 3)  # the buffers are made as the headers arrive; the stall has not passed
        grown = rss_bytes(bulk.head_pid) - before
        for peer in peers:  # the stall timer still cuts every one of them off
            rest, _ = peer.rest_until_closed(within=STALL_S + 5)
            assert [a.code for a in frames(rest)] == ["InvalidArgument"]
    finally:
        for peer in peers:
            peer.sock.close()
    assert grown < 200 * 2**20, f"the server's RSS grew by {grown / 2**20:.0f} MiB for 8 KiB received"
    assert_serves(bulk)


def test_a_peer_that_reads_no_answers_costs_bounded_memory(bulk: BulkCluster) -> None:
    """5000 READs of a full 64 KiB chunk (420 KB of requests, 328 MB of answers) from a
    peer that never reads: the server must stop reading requests once its unsent
    answers pile up (the in-flight caps bound requests, not answers waiting to be sent)."""
    spot, full, bound = bulk.spot, random.Random(10).randbytes(CHUNK), 100 * 2**20
    with greeted(spot.bulk) as peer:
        head, ext = spot.write(1, full, inode_id=SCRATCH_INODE + 2)
        peer.request(head, ext, full)
        assert peer.answer().head.status == w.STATUS_OK
    before = rss_bytes(bulk.head_pid)
    grown = 0
    with greeted(spot.bulk) as peer:
        stream = b"".join(w.pack_request(spot.read(i, length=CHUNK, inode_id=SCRATCH_INODE + 2))
                          for i in range(1, 5001))
        peer.sock.settimeout(1)
        with contextlib.suppress(TimeoutError):  # the server stopped reading: the back-pressure asked for
            peer.send(stream)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and grown < bound:
            grown = max(grown, rss_bytes(bulk.head_pid) - before)
            time.sleep(0.05)
    assert_serves(bulk)  # (also lets the server drop the flood before the module's teardown stops it)
    assert grown < bound, f"the server's RSS grew by at least {grown / 2**20:.0f} MiB holding answers nobody reads"

