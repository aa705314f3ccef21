"""Streams the bulk server cannot trust, and closes: a bad hello or a wrong protocol
version (refused at once), a header that breaks the protocol (an error frame, then
close), a peer silent before its hello or mid-frame (cut off after the stall timeout,
not before), a peer gone mid-payload (nothing of it written); and the greeted idle
peer, which it keeps. A refusal must come promptly, not by the stall timer.
"""

from __future__ import annotations

import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from emberfs.common import bulkwire as w

from ._peer import ORIGINAL, PROMPT_S, STALL_S, BulkCluster, Peer, assert_serves, frames, greeted, lying_header

pytestmark = pytest.mark.timeout(120)


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


# -- broken headers and stopped frames: an error frame where possible, then close ----------


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
        peer.send(lying_header(bulk.spot.read(5), **lie) + w.pack_request(bulk.spot.read(6)))
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
        "header-and-half-its-ext": (True, lying_header(head, ext_length=len(ext), payload_length=100_000) + ext[:5]),
        "part-of-a-small-payload": (True, lying_header(small, ext_length=len(small_ext), payload_length=100)
                                    + small_ext + bytes(10)),
        "part-of-a-large-payload": (True, lying_header(head, ext_length=len(ext), payload_length=100_000)
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
    peer.send(lying_header(head, ext_length=len(ext), payload_length=len(data)) + ext + data[:10_000])
    if reset:
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.sock.close()
    time.sleep(0.2)  # let the server see the close before the read below
    assert_serves(bulk)
