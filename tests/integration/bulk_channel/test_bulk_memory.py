"""What a peer can make the bulk server hold: memory follows the bytes a peer sends,
not the payload lengths it announces, and answers a peer leaves unread stop the
server reading more requests (its RSS stays bounded).
"""

from __future__ import annotations

import contextlib
import random
import time

import pytest

from emberfs.common import bulkwire as w

from ._peer import CHUNK, SCRATCH_INODE, STALL_S, BulkCluster, assert_serves, frames, greeted, lying_header, rss_bytes

pytestmark = pytest.mark.timeout(120)


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
            peer.send(lying_header(head, ext_length=len(ext), payload_length=w.MAX_PAYLOAD) + ext + bytes(1024))
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
