"""Pipelining on the bulk channel, and the two transports: requests sent back to back
are all answered by id, a peer that half-closes still gets every answer, a burst the
server is slow to work through is not taken for a stalled peer, and the bulk and gRPC
clients read the same bytes.
"""

from __future__ import annotations

import random
import socket
import time

import pytest

from emberfs.client import Client
from emberfs.common import bulkwire as w

from ._peer import CHUNK, ORIGINAL, PATH, SCRATCH_INODE, Answer, BulkCluster, assert_serves, frames, greeted, run

pytestmark = pytest.mark.timeout(120)


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
