"""crc32c_combine against the CRC of the concatenated bytes, and the whole-file CRC that
RecordWriter reports against the file it wrote."""

from __future__ import annotations

import os
from pathlib import Path

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberfs.client._crc import crc32c_combine
from emberfs.client.data import HEADER_SIZE, LocalFiles, RecordWriter, decode_header


@pytest.mark.parametrize(
    "a, b",
    [
        (b"", b""), (b"", b"x"), (b"x", b""), (b"header", b"body"), (bytes(32), bytes(1)),
        (os.urandom(32), os.urandom(65536)), (os.urandom(7), os.urandom((1 << 20) + 3)),
    ],
)
def test_combine_table(a: bytes, b: bytes) -> None:
    assert crc32c_combine(crc32c.crc32c(a), crc32c.crc32c(b), len(b)) == crc32c.crc32c(a + b)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=2000))
def test_combine_any(a: bytes, b: bytes) -> None:
    assert crc32c_combine(crc32c.crc32c(a), crc32c.crc32c(b), len(b)) == crc32c.crc32c(a + b)


def test_combine_of_long_zero_runs() -> None:
    # Lengths past 2^29 bytes use the upper part of the power table (zlib's table wraps there).
    zeros = bytes(1 << 20)
    crc = 0
    for _ in range(3):
        crc = crc32c.crc32c(zeros, crc)
    assert crc32c_combine(crc32c.crc32c(b"a"), crc, 3 << 20) == crc32c.crc32c(b"a" + zeros * 3)
    big = crc32c_combine(0x12345678, 0, (1 << 33) + 5)  # no bytes needed: just must not fail
    assert 0 <= big < 1 << 32


@pytest.mark.parametrize("length", [-1, 1 << 61])
def test_combine_refuses_lengths_out_of_range(length: int) -> None:
    with pytest.raises(ValueError, match="length_b"):
        crc32c_combine(0, 0, length)


@pytest.mark.parametrize(
    "samples, buffer_size",
    [([], 1 << 20), ([b""], 1 << 20), ([b"one"], 1 << 20), ([os.urandom(n) for n in range(0, 3000, 7)], 1000)],
)
def test_record_writer_reports_the_file_it_wrote(tmp_path: Path, samples: list[bytes], buffer_size: int) -> None:
    path = str(tmp_path / "s.rec")
    writer = RecordWriter(LocalFiles(), path, buffer_size=buffer_size)
    assert writer.file_crc is None and writer.file_size is None
    with writer:
        for sample in samples:
            writer.write(sample)
    data = Path(path).read_bytes()
    assert writer.file_size == len(data)
    assert writer.file_crc == crc32c.crc32c(data)
    assert writer.index_crc == decode_header(path, data[:HEADER_SIZE]).index_crc


def test_an_aborted_record_writer_reports_nothing(tmp_path: Path) -> None:
    writer = RecordWriter(LocalFiles(), str(tmp_path / "s.rec"))
    with pytest.raises(RuntimeError), writer:
        writer.write(b"x")
        raise RuntimeError("stop")
    assert writer.file_crc is None and writer.file_size is None and writer.index_crc is None
