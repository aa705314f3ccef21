"""The bulk channel's wire format (common/bulkwire.py): round trips, the pinned byte
layout, every refusal a header can earn, error frames, and hypothesis properties:
any 84-byte (36-byte) string either unpacks into a request (response) that packs back
to the same bytes, or raises FrameError; nothing else escapes the parser."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberfs.common import bulkwire as w

U8, U16, U32, U64 = (st.integers(0, 2**bits - 1) for bits in (8, 16, 32, 64))

REQUEST = w.Request(
    op=w.OP_WRITE, request_id=0x0102030405060708, kind=3, chain_id=0x11223344, chunk_index=9,
    chain_version=0xA1A2A3A4A5A6A7A8, inode_id=0xB1B2B3B4B5B6B7B8, offset=0x100, length=0x200,
    crc32c=0xCAFEBABE, chunk_size=1 << 16, target_id=101, update_version=7, from_target=201,
    ext_length=12, payload_length=0x300,
)
RESPONSE = w.Response(request_id=42, status=w.STATUS_OK, flags=w.FLAG_EXISTS, commit_version=5,
                      chunk_length=4096, crc32c=0xDEADBEEF, ext_length=0, payload_length=4096)


# -- sizes and layout -----------------------------------------------------------------


def test_fixed_sizes_are_the_documented_ones() -> None:
    assert (w.HELLO.size, w.REQUEST.size, w.RESPONSE.size) == (12, 84, 36)


def test_request_layout_is_little_endian_in_the_documented_order() -> None:
    """Pinned bytes: a field moved or an endianness changed breaks every peer of another version."""
    data = w.pack_request(REQUEST)
    assert data[0:2] == b"\x1f\xeb"  # FRAME_MAGIC 0xEB1F, little-endian
    assert (data[2], data[3]) == (w.OP_WRITE, 3)
    assert data[4:12] == bytes(range(8, 0, -1))  # request id
    assert data[12:16] == bytes([0x44, 0x33, 0x22, 0x11])  # chain id
    assert struct.unpack_from("<I", data, 16)[0] == 9  # chunk index
    assert data[20:28] == bytes(range(0xA8, 0xA0, -1))  # chain version
    assert data[28:36] == bytes(range(0xB8, 0xB0, -1))  # inode id
    assert struct.unpack_from("<IIII", data, 36) == (0x100, 0x200, 0xCAFEBABE, 1 << 16)
    assert struct.unpack_from("<QQQII", data, 52) == (101, 7, 201, 12, 0x300)


def test_response_and_hello_layout() -> None:
    data = w.pack_response(RESPONSE)
    assert data[0:2] == b"\x1f\xeb" and (data[2], data[3]) == (w.STATUS_OK, w.FLAG_EXISTS)
    assert struct.unpack_from("<QQIIII", data, 4) == (42, 5, 4096, 0xDEADBEEF, 0, 4096)
    assert w.pack_hello(1, 0, b"tok") == b"EMBF" + b"\x01\x00" + b"\x00\x00" + b"\x03\x00\x00\x00" + b"tok"


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("version, field, body", [(w.VERSION, 0, b""), (w.VERSION, w.STATUS_ERROR, b"why"),
                                                  (0xFFFF, 0xFFFF, b"t" * w.MAX_TOKEN)])
def test_hello_round_trip(version: int, field: int, body: bytes) -> None:
    data = w.pack_hello(version, field, body)
    assert w.unpack_hello(data[:w.HELLO.size], max_body=w.MAX_TOKEN) == w.Hello(version, field, len(body))
    assert data[w.HELLO.size:] == body


def test_request_and_response_round_trip() -> None:
    assert w.unpack_request(w.pack_request(REQUEST)) == REQUEST
    assert w.unpack_response(w.pack_response(RESPONSE)) == RESPONSE
    # A memoryview (what the servers hand the parser) works as well as bytes.
    assert w.unpack_request(memoryview(bytearray(w.pack_request(REQUEST)))) == REQUEST


REQUESTS = st.builds(
    w.Request, op=U8, request_id=U64, kind=U8, chain_id=U32, chunk_index=U32, chain_version=U64,
    inode_id=U64, offset=U32, length=U32, crc32c=U32, chunk_size=U32, target_id=U64, update_version=U64,
    from_target=U64, ext_length=st.integers(0, w.MAX_EXT), payload_length=st.integers(0, w.MAX_PAYLOAD),
)
RESPONSES = st.builds(
    w.Response, request_id=U64, status=st.sampled_from([w.STATUS_OK, w.STATUS_ERROR]), flags=U8,
    commit_version=U64, chunk_length=U32, crc32c=U32, ext_length=st.integers(0, w.MAX_EXT),
    payload_length=st.integers(0, w.MAX_PAYLOAD),
)


@settings(max_examples=300, deadline=None)
@given(REQUESTS)
def test_any_valid_request_round_trips(request: w.Request) -> None:
    data = w.pack_request(request)
    assert len(data) == w.REQUEST.size
    assert w.unpack_request(data) == request


@settings(max_examples=300, deadline=None)
@given(RESPONSES)
def test_any_valid_response_round_trips(response: w.Response) -> None:
    data = w.pack_response(response)
    assert len(data) == w.RESPONSE.size
    assert w.unpack_response(data) == response


# -- refusals -----------------------------------------------------------------------------


def _request_with(**fields: int) -> bytes:
    """A packed request whose magic or lengths may break the caps (pack does not check)."""
    magic = fields.pop("magic", w.FRAME_MAGIC)
    data = bytearray(w.pack_request(w.Request(w.OP_READ, 1, **fields)))
    struct.pack_into("<H", data, 0, magic)
    return bytes(data)


def _response_with(status: int = w.STATUS_OK, magic: int = w.FRAME_MAGIC, **fields: int) -> bytes:
    data = bytearray(w.pack_response(w.Response(1, **fields)))
    struct.pack_into("<HB", data, 0, magic, status)
    return bytes(data)


@pytest.mark.parametrize("fields, message", [
    ({"magic": 0}, "bad frame magic 0x0000"),
    ({"magic": 0x1FEB}, "bad frame magic"),  # the magic byte-swapped: a big-endian peer
    ({"ext_length": w.MAX_EXT + 1}, "extension"),
    ({"ext_length": 2**32 - 1}, "extension"),
    ({"payload_length": w.MAX_PAYLOAD + 1}, "payload"),
    ({"payload_length": 2**32 - 1}, "payload"),
])
def test_untrustworthy_request_header_is_a_frame_error(fields: dict[str, int], message: str) -> None:
    with pytest.raises(w.FrameError, match=message):
        w.unpack_request(_request_with(**fields))


@pytest.mark.parametrize("fields, message", [
    ({"magic": 0xFFFF}, "bad frame magic"),
    ({"status": 2}, "unknown response status 2"),
    ({"status": 255}, "unknown response status"),
    ({"ext_length": w.MAX_EXT + 1}, "extension"),
    ({"payload_length": w.MAX_PAYLOAD + 1}, "payload"),
])
def test_untrustworthy_response_header_is_a_frame_error(fields: dict[str, int], message: str) -> None:
    with pytest.raises(w.FrameError, match=message):
        w.unpack_response(_response_with(**fields))


def test_lengths_at_the_caps_are_accepted() -> None:
    head = w.unpack_request(_request_with(ext_length=w.MAX_EXT, payload_length=w.MAX_PAYLOAD))
    assert (head.ext_length, head.payload_length) == (w.MAX_EXT, w.MAX_PAYLOAD)
    reply = w.unpack_response(_response_with(ext_length=w.MAX_EXT, payload_length=w.MAX_PAYLOAD))
    assert (reply.ext_length, reply.payload_length) == (w.MAX_EXT, w.MAX_PAYLOAD)


@pytest.mark.parametrize("data, message", [
    (b"HTTP" + bytes(8), "bad hello magic"),
    (b"embf" + bytes(8), "bad hello magic"),  # magic is case-sensitive
    (struct.pack("<4sHHI", b"EMBF", 1, 0, w.MAX_TOKEN + 1), f"exceeds {w.MAX_TOKEN}"),
    (struct.pack("<4sHHI", b"EMBF", 1, 0, 2**32 - 1), "exceeds"),
])
def test_bad_hello_is_a_frame_error(data: bytes, message: str) -> None:
    with pytest.raises(w.FrameError, match=message):
        w.unpack_hello(data, max_body=w.MAX_TOKEN)


def test_frame_error_is_a_value_error() -> None:
    """Callers that catch ValueError for bad input see frame errors too."""
    assert issubclass(w.FrameError, ValueError)


# -- error frames -------------------------------------------------------------------------


@pytest.mark.parametrize("code, message", [
    ("InvalidArgument", "unknown bulk op 9"),
    ("StaleChainVersion", ""),
    ("Internal", "line one\nline two"),  # only the first newline separates code from message
    ("ChecksumMismatch", "données corrompues ✗"),
])
def test_error_round_trip(code: str, message: str) -> None:
    assert w.decode_error(w.encode_error(code, message)) == (code, message)


def test_decode_error_without_a_separator_is_all_code() -> None:
    assert w.decode_error(b"Internal") == ("Internal", "")
    assert w.decode_error(b"") == ("", "")
    assert w.decode_error(memoryview(b"NotFound\nno chain")) == ("NotFound", "no chain")


def test_decode_error_survives_bytes_that_are_not_utf8() -> None:
    code, message = w.decode_error(b"Internal\n\xff\xfe ok")
    assert code == "Internal" and message.endswith(" ok")


def test_a_long_error_is_cut_to_fit_the_ext_cap() -> None:
    ext = w.encode_error("Internal", "x" * (2 * w.MAX_EXT))
    assert len(ext) == w.MAX_EXT
    code, message = w.decode_error(ext)
    assert code == "Internal" and message == "x" * (w.MAX_EXT - len("Internal\n"))


def test_cutting_a_long_error_keeps_whole_characters() -> None:
    """The cut lands between characters: the message read back is a prefix of the one
    sent, with no U+FFFD made out of half a multi-byte character."""
    original = "é" * w.MAX_EXT  # 2 bytes each; "Internal\n" is 9 bytes, so the cap falls mid-character
    ext = w.encode_error("Internal", original)
    assert len(ext) <= w.MAX_EXT
    code, message = w.decode_error(ext)
    assert code == "Internal"
    whole = original.startswith(message)  # (not in the assert: pytest would print 64 KiB of it)
    assert whole, f"the message read back ends with {message[-3:]!r}"


CODES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
MESSAGES = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)  # no lone surrogates: not UTF-8


@settings(max_examples=200, deadline=None)
@given(CODES, MESSAGES)
def test_any_error_round_trips(code: str, message: str) -> None:
    assert w.decode_error(w.encode_error(code, message)) == (code, message)


# -- the parser on arbitrary bytes ---------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=w.REQUEST.size, max_size=w.REQUEST.size))
def test_any_84_bytes_unpack_to_a_request_or_a_frame_error(data: bytes) -> None:
    try:
        head = w.unpack_request(data)
    except w.FrameError:
        return
    assert head.ext_length <= w.MAX_EXT and head.payload_length <= w.MAX_PAYLOAD
    assert w.pack_request(head) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=w.RESPONSE.size, max_size=w.RESPONSE.size))
def test_any_36_bytes_unpack_to_a_response_or_a_frame_error(data: bytes) -> None:
    try:
        head = w.unpack_response(data)
    except w.FrameError:
        return
    assert head.status in (w.STATUS_OK, w.STATUS_ERROR)
    assert head.ext_length <= w.MAX_EXT and head.payload_length <= w.MAX_PAYLOAD
    assert w.pack_response(head) == data


@settings(max_examples=300, deadline=None)
@given(REQUESTS, st.lists(st.tuples(st.integers(0, w.REQUEST.size - 1), U8), max_size=6))
def test_a_corrupted_request_unpacks_or_is_a_frame_error(request: w.Request, damage: list[tuple[int, int]]) -> None:
    """A valid header with a few bytes overwritten: the parser's likeliest real input."""
    data = bytearray(w.pack_request(request))
    for at, byte in damage:
        data[at] = byte
    try:
        head = w.unpack_request(bytes(data))
    except w.FrameError:
        return
    assert w.pack_request(head) == bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=w.HELLO.size, max_size=w.HELLO.size))
def test_any_12_bytes_unpack_to_a_hello_or_a_frame_error(data: bytes) -> None:
    try:
        hello = w.unpack_hello(data, max_body=w.MAX_TOKEN)
    except w.FrameError:
        return
    assert data[:4] == w.HELLO_MAGIC and hello.body_length <= w.MAX_TOKEN
    assert w.pack_hello(hello.version, hello.field, bytes(hello.body_length))[:w.HELLO.size] == data


# -- Stage: the receive buffer both ends parse from -------------------------------------


def _feed(stage: w.Stage, data: bytes) -> None:
    """As a BufferedProtocol would: copy into free(), then filled()."""
    while data:
        view = stage.free()
        n = min(len(view), len(data))
        view[:n] = data[:n]
        stage.filled(n)
        data = data[n:]


def test_stage_gives_whole_hellos_and_frames_only() -> None:
    stage = w.Stage(64 * 1024)
    hello = w.pack_hello(w.VERSION, 0, b"token-bytes")
    _feed(stage, hello[:7])
    assert stage.hello(max_body=w.MAX_TOKEN) is None and len(stage) == 7  # nothing consumed
    _feed(stage, hello[7:])
    got = stage.hello(max_body=w.MAX_TOKEN)
    assert got is not None and got[1] == b"token-bytes" and len(stage) == 0
    head = w.Request(w.OP_WRITE, 9, ext_length=3, payload_length=5)
    frame = w.pack_request(head) + b"ext" + b"12345"
    _feed(stage, frame[: w.REQUEST.size + 2])
    assert stage.head(w.REQUEST, w.unpack_request) is None  # the ext is not whole yet
    _feed(stage, frame[w.REQUEST.size + 2: -2])
    parsed, ext = stage.head(w.REQUEST, w.unpack_request)  # type: ignore[misc]
    assert (parsed.request_id, ext) == (9, b"ext")
    assert bytes(stage.take(5)) == b"123"  # only what arrived; the rest is the caller's
    assert len(stage) == 0


def test_stage_compacts_instead_of_growing() -> None:
    stage = w.Stage(8192)
    sent = bytes(range(256)) * 2000  # 512,000 bytes through an 8 KiB buffer
    out = bytearray()
    _feed(stage, sent[:1000])  # 1000 bytes always left behind: the next free() moves them down
    for at in range(1000, len(sent), 5000):
        _feed(stage, sent[at:at + 5000])
        out += stage.take(5000)
    out += stage.take(len(stage))
    assert out == sent


def test_stage_refuses_a_header_whose_ext_cannot_fit() -> None:
    stage = w.Stage(4096)
    _feed(stage, w.pack_response(w.Response(1, ext_length=5000)))
    with pytest.raises(w.FrameError):
        stage.head(w.RESPONSE, w.unpack_response)
