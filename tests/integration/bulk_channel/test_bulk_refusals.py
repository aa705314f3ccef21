"""Requests the bulk server refuses while the connection goes on: an unknown op or a
malformed frame (InvalidArgument), a stale chain version (StaleChainVersion), a WRITE
whose CRC32C does not match (ChecksumMismatch, nothing written); each gets its error
frame and the next request on the same connection is served.
"""

from __future__ import annotations

import pytest

from emberfs.client import Client
from emberfs.common import bulkwire as w

from ._peer import ORIGINAL, PATH, SCRATCH_INODE, BulkCluster, assert_serves, greeted, run

pytestmark = pytest.mark.timeout(120)


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
