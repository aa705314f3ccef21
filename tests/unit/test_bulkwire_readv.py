"""READV's bodies on the bulk channel (common/bulkwire.py): the piece table of a request,
the result table of an answer, their pinned layout, every limit and malformation they
refuse, and hypothesis properties: any bytes either unpack into what packs back to the
same bytes, or raise ValueError; nothing else escapes the parsers."""

from __future__ import annotations

import struct

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberfs.common import bulkwire as w
from emberfs.common.layout import ChunkSpan

U32 = st.integers(0, 2**32 - 1)


def test_sizes_and_layout_are_the_documented_ones() -> None:
    assert (w.READV_READ.size, w.READV_RESULT.size) == (12, 24)
    assert w.pack_readv_reads([(7, 0x100, 0x4000)]) == struct.pack("<III", 7, 0x100, 0x4000)
    result = w.ReadvResult(w.STATUS_OK, w.FLAG_EXISTS, commit_version=9, chunk_length=4096, crc32c=0xCAFEBABE,
                           data=b"abc")
    payload = w.pack_readv_results([result])
    # status, flags, error length, chunk length, commit version, crc32c, data length; then the bytes
    assert payload[:24] == struct.pack("<BBHIQII", 0, 1, 0, 4096, 9, 0xCAFEBABE, 3)
    assert payload[24:] == b"abc"


# -- the request's piece table -----------------------------------------------------------


@pytest.mark.parametrize("reads", [
    [(0, 0, 1)],
    [(1, 2, 3), (4, 5, 6), (1, 2, 3)],  # the same piece twice is allowed: answered twice
    [(2**32 - 1, 2**32 - 1, 0)],
    [(i, 0, w.MAX_READV_BYTES // w.MAX_READV_READS) for i in range(w.MAX_READV_READS)],  # both limits exactly
])
def test_piece_table_round_trips(reads: list[tuple[int, int, int]]) -> None:
    assert w.unpack_readv_reads(w.pack_readv_reads(reads)) == reads


def test_chunk_spans_pack_as_pieces() -> None:
    spans = [ChunkSpan(3, 10, 20), ChunkSpan(4, 0, 5)]
    assert w.unpack_readv_reads(w.pack_readv_reads(spans)) == [(3, 10, 20), (4, 0, 5)]


@pytest.mark.parametrize("payload, message", [
    (b"", "non-empty"),
    (b"\0" * 11, "not 11 bytes"),
    (b"\0" * 13, "not 13 bytes"),
    (w.pack_readv_reads([(0, 0, 1)] * (w.MAX_READV_READS + 1)), f"the limit is {w.MAX_READV_READS}"),
    (w.pack_readv_reads([(0, 0, w.MAX_READV_BYTES), (1, 0, 1)]), f"the limit is {w.MAX_READV_BYTES}"),
    (w.pack_readv_reads([(0, 0, 2**32 - 1)]), "bytes; the limit"),
])
def test_bad_piece_tables_are_refused(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        w.unpack_readv_reads(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_piece_table_or_a_value_error(payload: bytes) -> None:
    try:
        reads = w.unpack_readv_reads(payload)
    except ValueError:
        return
    assert 1 <= len(reads) <= w.MAX_READV_READS
    assert w.pack_readv_reads(reads) == payload


# -- READVM: the file table and its pieces -------------------------------------------------

CAP = bytes(range(54))  # a capability's size (common/capability.py)


def test_readvm_layout_is_the_documented_one() -> None:
    assert w.READVM_READ.size == 16
    assert w.pack_readvm_reads([(1, 7, 0x100, 0x4000)]) == struct.pack("<IIII", 1, 7, 0x100, 0x4000)
    assert w.pack_readv_files([(9, b"cap"), (2**64 - 1, b"")]) == (
        struct.pack("<H", 2) + struct.pack("<QH", 9, 3) + b"cap" + struct.pack("<QH", 2**64 - 1, 0))


@pytest.mark.parametrize("files", [
    [(1, b"")],  # no tokens: no capability
    [(1, CAP), (2, CAP), (3, b"")],
    [(i, b"c" * w.MAX_CAPABILITY) for i in range(w.MAX_READV_FILES)],  # both limits exactly
])
def test_file_table_round_trips(files: list[tuple[int, bytes]]) -> None:
    ext = w.pack_readv_files(files)
    assert w.unpack_readv_files(ext) == files
    assert len(ext) <= w.MAX_EXT


@pytest.mark.parametrize("ext, message", [
    (b"", "has no count"),
    (b"\0", "has no count"),
    (struct.pack("<H", 0), "names 0 files"),
    (w.pack_readv_files([(i, b"") for i in range(w.MAX_READV_FILES + 1)]), f"1 to {w.MAX_READV_FILES}"),
    (w.pack_readv_files([(1, CAP)])[:-1], "capability of 54 bytes"),  # the capability cut short
    (w.pack_readv_files([(1, CAP)])[:5], "ends inside file 0"),
    (struct.pack("<H", 2) + w.pack_readv_files([(1, CAP)])[2:], "ends inside file 1"),  # one file fewer than said
    (w.pack_readv_files([(1, CAP)]) + b"x", "1 bytes past its 1 files"),
    (w.pack_readv_files([(1, b"c" * (w.MAX_CAPABILITY + 1))]), "capability of 161 bytes"),
    (w.pack_readv_files([(1, CAP), (2, b""), (1, b"")]), "an inode twice"),
])
def test_bad_file_tables_are_refused(ext: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        w.unpack_readv_files(ext)


@pytest.mark.parametrize("reads, files", [
    ([(0, 0, 0, 1)], 1),
    ([(2, 1, 2, 3), (0, 4, 5, 6), (2, 1, 2, 3)], 3),  # the same piece twice is allowed: answered twice
    ([(i % 7, i, 0, w.MAX_READV_BYTES // w.MAX_READV_READS) for i in range(w.MAX_READV_READS)], 7),  # the limits
])
def test_readvm_piece_table_round_trips(reads: list[tuple[int, int, int, int]], files: int) -> None:
    assert w.unpack_readvm_reads(w.pack_readvm_reads(reads), files) == reads


@pytest.mark.parametrize("payload, files, message", [
    (b"", 1, "non-empty"),
    (b"\0" * 15, 1, "not 15 bytes"),
    (b"\0" * 17, 1, "not 17 bytes"),
    (w.pack_readvm_reads([(0, 0, 0, 1)] * (w.MAX_READV_READS + 1)), 1, f"the limit is {w.MAX_READV_READS}"),
    (w.pack_readvm_reads([(0, 0, 0, w.MAX_READV_BYTES), (0, 1, 0, 1)]), 1, f"the limit is {w.MAX_READV_BYTES}"),
    (w.pack_readvm_reads([(0, 0, 0, 1), (3, 0, 0, 1)]), 3, "names file 3 of a table of 3"),
])
def test_bad_readvm_piece_tables_are_refused(payload: bytes, files: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        w.unpack_readvm_reads(payload, files)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_file_table_or_a_value_error(ext: bytes) -> None:
    try:
        files = w.unpack_readv_files(ext)
    except ValueError:
        return
    assert 1 <= len(files) <= w.MAX_READV_FILES
    assert w.pack_readv_files(files) == ext


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 4))
def test_any_bytes_are_a_readvm_piece_table_or_a_value_error(payload: bytes, files: int) -> None:
    try:
        reads = w.unpack_readvm_reads(payload, files)
    except ValueError:
        return
    assert 1 <= len(reads) <= w.MAX_READV_READS and all(read[0] < files for read in reads)
    assert w.pack_readvm_reads(reads) == payload


# -- the answer's result table -----------------------------------------------------------


def _ok(data: bytes, *, exists: bool = True) -> w.ReadvResult:
    return w.ReadvResult(w.STATUS_OK, w.FLAG_EXISTS if exists else 0, commit_version=3, chunk_length=len(data),
                         crc32c=crc32c.crc32c(data), data=data)


def _failed(code: str, message: str) -> w.ReadvResult:
    return w.ReadvResult(w.STATUS_ERROR, error=w.encode_error(code, message, w.MAX_READV_ERROR))


@pytest.mark.parametrize("results", [
    [],
    [_ok(b"sample one")],
    [_ok(b""), _ok(b"", exists=False)],  # an empty piece; a hole
    [_ok(b"a" * 100), _failed("StaleChainVersion", "chain 3 is at version 4"), _ok(b"b" * 7),
     _failed("ChecksumMismatch", "chunk 9 fails its CRC32C")],
])
def test_result_table_round_trips(results: list[w.ReadvResult]) -> None:
    got = w.unpack_readv_results(w.pack_readv_results(results), len(results))
    assert [(r.status, r.flags, r.commit_version, r.chunk_length, r.crc32c, bytes(r.data), r.error) for r in got] \
        == [(r.status, r.flags, r.commit_version, r.chunk_length, r.crc32c, bytes(r.data), r.error) for r in results]
    assert [r.exists for r in got] == [r.exists for r in results]


def test_result_data_are_views_of_the_payload_not_copies() -> None:
    payload = bytearray(w.pack_readv_results([_ok(b"first"), _ok(b"second")]))
    first, second = w.unpack_readv_results(payload, 2)
    assert isinstance(first.data, memoryview) and first.data.obj is payload
    assert (bytes(first.data), bytes(second.data)) == (b"first", b"second")


def _row(status: int = w.STATUS_OK, error_length: int = 0, data_length: int = 0) -> bytes:
    return w.READV_RESULT.pack(status, 0, error_length, 0, 0, 0, data_length)


@pytest.mark.parametrize("payload, count, message", [
    (b"", 1, "too short for 1 results"),
    (_row()[:-1], 1, "too short"),
    (_row() + b"x", 1, "does not match its result table"),  # a byte nobody accounts for
    (_row(data_length=5) + b"abc", 1, "does not match"),  # announced 5, sent 3
    (_row() + _row(), 1, "does not match"),  # more results than pieces asked
    (_row(), 2, "too short for 2 results"),
    (_row(status=2), 1, "status 2"),
    (_row(error_length=3) + b"why", 1, "status 0, 3 error"),  # OK yet carrying an error
    (_row(status=w.STATUS_ERROR), 1, "status 1, 0 error"),  # a failure that says nothing
    (_row(status=w.STATUS_ERROR, error_length=1, data_length=1) + b"ed", 1, "1 data bytes"),
])
def test_bad_result_tables_are_refused(payload: bytes, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        w.unpack_readv_results(payload, count)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 12))
def test_any_bytes_are_results_or_a_value_error(payload: bytes, count: int) -> None:
    try:
        results = w.unpack_readv_results(payload, count)
    except ValueError:
        return
    assert len(results) == count
    assert w.pack_readv_results(results) == payload


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.builds(_ok, st.binary(max_size=64), exists=st.booleans()),
    st.builds(_failed, st.sampled_from(["Unavailable", "NotFound", "Internal"]), st.text(max_size=3000)),
), max_size=20))
def test_any_results_round_trip(results: list[w.ReadvResult]) -> None:
    got = w.unpack_readv_results(w.pack_readv_results(results), len(results))
    assert [(r.status, bytes(r.data), r.error) for r in got] == [(r.status, bytes(r.data), r.error) for r in results]


def test_a_piece_error_is_cut_to_its_limit_on_a_character_boundary() -> None:
    error = w.encode_error("Internal", "é" * w.MAX_READV_ERROR, w.MAX_READV_ERROR)
    assert len(error) <= w.MAX_READV_ERROR
    code, message = w.decode_error(error)
    assert code == "Internal" and message and set(message) == {"é"}


def test_the_largest_answer_fits_one_frame() -> None:
    """Every piece at its error limit plus every byte asked for still fits MAX_PAYLOAD."""
    worst = w.MAX_READV_READS * (w.READV_RESULT.size + w.MAX_READV_ERROR) + w.MAX_READV_BYTES
    assert worst <= w.MAX_PAYLOAD
