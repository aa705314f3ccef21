"""The record-shard format (emberfs.client.data) without a cluster: the pure encode and
decode functions against tables of good and malformed shards, hypothesis round trips,
and the writer and reader over local files (`LocalFiles`, the same calls as SyncClient)."""

from __future__ import annotations

import errno
import pickle
import struct
import tempfile
from pathlib import Path

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberfs.client.data import (
    HEADER_SIZE, MAGIC, VERSION, LocalFiles, RecordReader, RecordWriter, ShardError, ShardHeader,
    check_sample, decode_header, decode_index, encode_header, encode_index, encode_shard, index_size,
    load_indexes,
)

P = "/data/shard-0.rec"


def decode(path: str, shard: bytes) -> list[bytes]:
    """Every sample of an in-memory shard, through the same steps a reader takes."""
    header = decode_header(path, shard[:HEADER_SIZE])
    index = decode_index(path, header, shard[header.index_offset:header.index_offset + index_size(header.count) + 1])
    return [check_sample(path, index, i, shard[slice(*_bounds(index.span(i)))]) for i in range(header.count)]


def _bounds(span: tuple[int, int]) -> tuple[int, int]:
    return span[0], span[0] + span[1]


# -- layout, byte for byte -------------------------------------------------------------


def test_layout_of_a_two_sample_shard() -> None:
    shard = encode_shard([b"ab", b"cde"])
    index = struct.pack("<QQQII", 32, 34, 37, crc32c.crc32c(b"ab"), crc32c.crc32c(b"cde"))
    assert shard == struct.pack("<8sIIQQ", b"EMBERREC", 1, crc32c.crc32c(index), 2, 37) + b"abcde" + index
    assert HEADER_SIZE == 32 and MAGIC == b"EMBERREC" and VERSION == 1
    assert index_size(2) == len(index) == 32


@pytest.mark.parametrize(
    "samples",
    [[], [b""], [b"", b"", b""], [b"x"], [b"a" * 70000, b"", b"b"], [bytes(range(256))] * 10],
)
def test_round_trip_table(samples: list[bytes]) -> None:
    shard = encode_shard(samples)
    assert len(shard) == HEADER_SIZE + sum(map(len, samples)) + index_size(len(samples))
    assert decode(P, shard) == samples


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=60))
def test_round_trip(samples: list[bytes]) -> None:
    assert decode(P, encode_shard(samples)) == samples


def test_encode_index_needs_count_plus_one_offsets() -> None:
    with pytest.raises(ValueError, match="count \\+ 1"):
        encode_index([32, 33], [1, 2])


# -- malformed shards: a clear error naming the file --------------------------------------

GOOD = encode_shard([b"alpha", b"beta", b"gamma"])
GOOD_HEADER = decode_header(P, GOOD)


def _with_header(**fields: int) -> bytes:
    values = {"count": 3, "index_offset": GOOD_HEADER.index_offset, "index_crc": GOOD_HEADER.index_crc} | fields
    return encode_header(values["count"], values["index_offset"], values["index_crc"]) + GOOD[HEADER_SIZE:]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "truncated: 0 bytes"),
        (GOOD[:31], "truncated: 31 bytes"),
        (b"PK\x03\x04" + bytes(28), "not a record shard"),
        (b"EMBERREC" + struct.pack("<IIQQ", 2, 0, 0, 32), "format version 2"),
        (encode_header(0, 0, 0), "unfinished"),
        (encode_header(1, 16, 0), "corrupt header"),
        (encode_header(1 << 40, 32, 0), "corrupt header"),
    ],
)
def test_bad_headers(data: bytes, message: str) -> None:
    with pytest.raises(ShardError, match=message) as info:
        decode_header(P, data)
    assert info.value.filename == P and info.value.errno == errno.EBADMSG
    assert P in str(info.value) and isinstance(info.value, OSError)


@pytest.mark.parametrize(
    "shard, message",
    [
        (GOOD[:-1], "truncated: the index of 3 samples needs 44 bytes"),
        (GOOD[:GOOD_HEADER.index_offset], "truncated"),
        (GOOD + b"\x00", "1 unexpected byte"),
        (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "corrupt index"),  # a sample CRC flipped
        (_with_header(count=2), "truncated|unexpected|corrupt"),  # the count disagrees with the index
        (_with_header(index_crc=GOOD_HEADER.index_crc ^ 1), "corrupt index"),
    ],
)
def test_bad_indexes(shard: bytes, message: str) -> None:
    with pytest.raises(ShardError, match=message) as info:
        decode(P, shard)
    assert info.value.filename == P


def test_index_offsets_must_span_the_samples() -> None:
    index = encode_index([32, 40, 36], [0, 0])  # backwards, but consistent in CRC and end
    header = ShardHeader(VERSION, 2, 36, crc32c.crc32c(index))
    with pytest.raises(ShardError, match="backwards"):
        decode_index(P, header, index)
    index = encode_index([30, 36], [0])
    with pytest.raises(ShardError, match="expected 32..36"):
        decode_index(P, ShardHeader(VERSION, 1, 36, crc32c.crc32c(index)), index)


def test_corrupt_or_short_sample() -> None:
    shard = encode_shard([b"alpha", b"beta"])
    header = decode_header(P, shard)
    index = decode_index(P, header, shard[header.index_offset:])
    assert check_sample(P, index, 1, b"beta") == b"beta"
    with pytest.raises(ShardError, match="sample 1 is corrupt"):
        check_sample(P, index, 1, b"bexa")
    with pytest.raises(ShardError, match="sample 0 needs 5 bytes, read 3"):
        check_sample(P, index, 0, b"alp")


# -- the writer and reader on local files -----------------------------------------------


def test_writer_and_reader_on_local_files(tmp_path: Path) -> None:
    path = str(tmp_path / "s.rec")
    samples = [bytes([i]) * (i * 97) for i in range(50)]
    fs = LocalFiles()
    with RecordWriter(fs, path, buffer_size=1000) as writer:
        assert [writer.write(s) for s in samples] == list(range(50))
        assert writer.count == 50 and writer.nbytes == sum(map(len, samples))
    assert Path(path).read_bytes() == encode_shard(samples)
    reader = RecordReader(fs, path)
    assert len(reader) == 50 and reader[3] == samples[3] and reader[-1] == samples[-1]
    assert reader.read_many([9, 2, 9]) == [samples[9], samples[2], samples[9]]
    assert list(reader) == samples
    with pytest.raises(IndexError, match="sample 50 of a shard of 50"):
        reader[50]
    clone = pickle.loads(pickle.dumps(fs))  # no descriptors cross a pickle
    assert clone.read_range(path, 0, 8) == MAGIC
    fs.close()


def test_a_writer_that_fails_leaves_an_unfinished_shard(tmp_path: Path) -> None:
    path = str(tmp_path / "s.rec")
    with pytest.raises(RuntimeError), RecordWriter(LocalFiles(), path) as writer:
        writer.write(b"sample")
        raise RuntimeError("the producer failed")
    with pytest.raises(ShardError, match="unfinished") as info:
        _ = RecordReader(LocalFiles(), path).index
    assert info.value.filename == path
    with pytest.raises(ValueError, match="closed RecordWriter"):
        writer.write(b"more")


def test_empty_writer_makes_an_empty_shard(tmp_path: Path) -> None:
    path = str(tmp_path / "empty.rec")
    RecordWriter(LocalFiles(), path).close()
    assert Path(path).read_bytes() == encode_shard([])
    assert len(RecordReader(LocalFiles(), path)) == 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.binary(max_size=200), max_size=20), min_size=1, max_size=4))
def test_load_indexes_of_many_shards(shards: list[list[bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k, samples in enumerate(shards):
            paths.append(f"{tmp}/{k}.rec")
            with RecordWriter(LocalFiles(), paths[-1], buffer_size=64) as writer:
                for s in samples:
                    writer.write(s)
        indexes = load_indexes(LocalFiles(), paths)
        assert [len(ix) for ix in indexes] == [len(s) for s in shards]
        for path, samples in zip(paths, shards, strict=True):
            assert list(RecordReader(LocalFiles(), path)) == samples
