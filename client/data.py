"""Record shards: many small samples in one large file, each readable in one ranged read.

A data loader that stores every sample as its own file pays a metadata lookup and a
small chunk read per sample; a *record shard* packs thousands of samples into one
file, so the file is looked up once and neighbouring samples share chunk reads.

Format, version 1 (every integer little-endian):

    offset 0      header, 32 bytes:
                    magic        8 bytes   b"EMBERREC"
                    version      u32       1
                    index_crc    u32       CRC32C of the index bytes
                    count        u64       number of samples
                    index_offset u64       where the index starts (0: the writer never finished)
    offset 32     the samples' bytes, back to back, in write order
    index_offset  the index, 12 * count + 8 bytes:
                    offsets      u64 x (count + 1)   sample i is bytes [offsets[i], offsets[i+1]);
                                                     offsets[0] = 32, offsets[count] = index_offset
                    crcs         u32 x count         CRC32C of each sample
    end of file   right after the index (no trailing bytes)

The writer streams samples and the index, then rewrites the header: a shard whose
writer died keeps index_offset 0 and reads as "unfinished", never as a short shard.
A reader fetches the header and then the index once per shard (for many shards,
two batched `read_ranges` calls in all) and caches it; sample i is then one ranged
read of exactly its bytes, checked against its CRC32C. Every malformed shard
(truncated, wrong magic, unknown version, inconsistent or corrupt index, a sample
whose CRC does not match) raises `ShardError`, an OSError (EBADMSG) naming the file.

    with SyncClient(meta) as fs:
        with RecordWriter(fs, "/data/train/shard-00000.rec") as w:
            for sample in samples:
                w.write(sample)
        reader = RecordReader(fs, "/data/train/shard-00000.rec")
        first, last = reader[0], reader[len(reader) - 1]

`LocalFiles` offers the same read and open calls over the local file system, so the
same writer, reader and datasets run on local disk (the baseline the demo and the
benchmark compare EmberFS with).

Many shards make a dataset: `emberfs.client.shards` writes them at a size and count
limit with a manifest (`ShardWriter`) and opens them by one path (`read_manifest`).
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Protocol, Self

import crc32c

from ._crc import crc32c_combine

__all__ = [
    "HEADER_SIZE", "MAGIC", "VERSION", "LocalFiles", "RangeReader", "RecordReader", "RecordWriter",
    "ShardError", "ShardHeader", "ShardIndex", "decode_header", "decode_index", "encode_header",
    "encode_index", "encode_shard", "check_sample", "index_size", "load_indexes",
]

MAGIC = b"EMBERREC"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQ")
HEADER_SIZE = _HEADER.size  # 32
_BIG_ENDIAN = sys.byteorder == "big"
_MAX_COUNT = 1 << 40  # a larger count is a corrupt header (its index alone would be 12 TiB)


class ShardError(OSError):
    """A record shard that is truncated, corrupt or not a shard: `ShardError(why, path)`."""

    def __init__(self, why: str, path: str) -> None:
        super().__init__(errno.EBADMSG, f"bad record shard: {why}", path)


@dataclass(frozen=True)
class ShardHeader:
    version: int
    count: int
    index_offset: int
    index_crc: int


@dataclass(frozen=True)
class ShardIndex:
    """Where each sample of one shard lies, and its CRC32C (plain arrays: cheap to pickle)."""

    offsets: array  # "Q", count + 1 entries
    crcs: array  # "I", count entries

    def __len__(self) -> int:
        return len(self.crcs)

    def span(self, i: int) -> tuple[int, int]:
        """(offset, length) of sample i."""
        start = self.offsets[i]
        return start, self.offsets[i + 1] - start


# -- pure encoding and decoding ---------------------------------------------------------


def index_size(count: int) -> int:
    return 12 * count + 8


def encode_header(count: int, index_offset: int, index_crc: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, index_crc, count, index_offset)


def _unfinished_header() -> bytes:
    return encode_header(0, 0, 0)


def encode_index(offsets: Sequence[int], crcs: Sequence[int]) -> bytes:
    """The index bytes for sample `offsets` (count + 1 of them) and `crcs` (count)."""
    if len(offsets) != len(crcs) + 1:
        raise ValueError(f"{len(offsets)} offsets for {len(crcs)} samples (need count + 1)")
    packed_offsets, packed_crcs = array("Q", offsets), array("I", crcs)
    if _BIG_ENDIAN:
        packed_offsets.byteswap()
        packed_crcs.byteswap()
    return packed_offsets.tobytes() + packed_crcs.tobytes()


def encode_shard(samples: Iterable[bytes | bytearray | memoryview]) -> bytes:
    """A whole shard in memory (for small shards, tests, and writers of local copies)."""
    body = bytearray()
    offsets, crcs = [HEADER_SIZE], []
    for sample in samples:
        body += sample
        offsets.append(HEADER_SIZE + len(body))
        crcs.append(crc32c.crc32c(sample))
    index = encode_index(offsets, crcs)
    return encode_header(len(crcs), offsets[-1], crc32c.crc32c(index)) + bytes(body) + index


def decode_header(path: str, data: bytes) -> ShardHeader:
    """The header at the start of `data` (the first HEADER_SIZE or more bytes of the file)."""
    if len(data) < HEADER_SIZE:
        raise ShardError(f"truncated: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header", path)
    magic, version, index_crc, count, index_offset = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ShardError(f"not a record shard (starts with {magic!r}, not {MAGIC!r})", path)
    if version != VERSION:
        raise ShardError(f"format version {version}; this reader knows version {VERSION}", path)
    if index_offset == 0:
        raise ShardError("unfinished: its writer never closed it", path)
    if index_offset < HEADER_SIZE or count >= _MAX_COUNT:
        raise ShardError(f"corrupt header (count {count}, index at {index_offset})", path)
    return ShardHeader(version, count, index_offset, index_crc)


def decode_index(path: str, header: ShardHeader, data: bytes) -> ShardIndex:
    """The index from the bytes read at header.index_offset (to the end of the file).

    `data` may be one byte longer than the index (the reader asks for one more byte to
    see trailing garbage); shorter means the file was cut.
    """
    need = index_size(header.count)
    if len(data) < need:
        raise ShardError(
            f"truncated: the index of {header.count} samples needs {need} bytes at offset "
            f"{header.index_offset}, the file holds {len(data)}", path)
    if len(data) > need:
        raise ShardError(f"{len(data) - need} unexpected byte(s) after the index", path)
    if crc32c.crc32c(data) != header.index_crc:
        raise ShardError("corrupt index (CRC32C mismatch)", path)
    offsets = array("Q")
    offsets.frombytes(data[: 8 * (header.count + 1)])
    crcs = array("I")
    crcs.frombytes(data[8 * (header.count + 1):])
    if _BIG_ENDIAN:
        offsets.byteswap()
        crcs.byteswap()
    if offsets[0] != HEADER_SIZE or offsets[-1] != header.index_offset:
        raise ShardError(f"corrupt index (samples span {offsets[0]}..{offsets[-1]}, "
                         f"expected {HEADER_SIZE}..{header.index_offset})", path)
    if any(offsets[i] > offsets[i + 1] for i in range(header.count)):
        raise ShardError("corrupt index (offsets go backwards)", path)
    return ShardIndex(offsets, crcs)


def check_sample(path: str, index: ShardIndex, i: int, data: bytes) -> bytes:
    """`data` if it is sample i whole and intact, else ShardError."""
    _, length = index.span(i)
    if len(data) != length:
        raise ShardError(f"truncated: sample {i} needs {length} bytes, read {len(data)}", path)
    if crc32c.crc32c(data) != index.crcs[i]:
        raise ShardError(f"sample {i} is corrupt (CRC32C mismatch)", path)
    return data


# -- I/O ----------------------------------------------------------------------------------


class RangeReader(Protocol):
    """What the readers and datasets need of a file system: `SyncClient`, or `LocalFiles`."""

    def read_file(self, path: str) -> bytes: ...

    def read_range(self, path: str, offset: int, length: int) -> bytes: ...

    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]: ...

    def open(self, path: str, mode: str = "rb") -> Any: ...


class LocalFiles:
    """The `SyncClient` read and open calls over local paths (os.pread on cached descriptors).

    Descriptors belong to the process that opened them: after fork or unpickling the
    copy opens its own, so it is as safe in data-loader workers as a SyncClient.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return "<LocalFiles>"

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def _fd(self, path: str) -> int:
        if self._pid != os.getpid():  # forked: the parent's descriptors stay the parent's
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return fd

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        fd = self._fd(path)
        if length > 1 << 24:  # pread allocates `length` first: clip a huge ask at EOF
            length = max(0, min(length, os.fstat(fd).st_size - offset))
        return os.pread(fd, length, offset)

    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        return [self.read_range(path, offset, length) for path, offset, length in ranges]

    def open(self, path: str, mode: str = "rb") -> IO[bytes]:
        return open(path, mode)  # noqa: SIM115 (the caller closes it)

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}


def load_indexes(fs: RangeReader, paths: Sequence[str]) -> list[ShardIndex]:
    """The indexes of many shards in two batched reads: every header, then every index."""
    heads = fs.read_ranges([(p, 0, HEADER_SIZE) for p in paths])
    headers = [decode_header(p, h) for p, h in zip(paths, heads, strict=True)]
    # One byte past the index: a longer file has trailing bytes, a shorter one was cut.
    tails = fs.read_ranges([(p, h.index_offset, index_size(h.count) + 1) for p, h in zip(paths, headers, strict=True)])
    return [decode_index(p, h, t) for p, h, t in zip(paths, headers, tails, strict=True)]


class RecordWriter:
    """Write one record shard: `with RecordWriter(fs, path) as w: i = w.write(sample)`.

    fs: a `SyncClient` or `LocalFiles`. Samples are buffered up to `buffer_size` bytes
    and sent in large writes. Leaving the block normally (or `close()`) writes the index
    and then the real header; leaving it by an exception closes the file unfinished.
    After a close, `file_size`, `file_crc` (CRC32C of the whole file, from the bytes as
    they were sent: nothing is read back) and `index_crc` describe the finished shard.
    """

    def __init__(self, fs: RangeReader, path: str, *, buffer_size: int = 4 << 20) -> None:
        self.fs, self.path, self.buffer_size = fs, path, buffer_size
        self._file: Any = None
        self._buffer = bytearray()
        self._offsets = array("Q", [HEADER_SIZE])
        self._crcs = array("I")
        self._finished = False
        self._tail_crc = 0  # CRC32C of every byte after the header sent so far
        self.file_size: int | None = None
        self.file_crc: int | None = None
        self.index_crc: int | None = None

    def __repr__(self) -> str:
        return f"<RecordWriter {self.path!r} {len(self._crcs)} samples>"

    @property
    def count(self) -> int:
        return len(self._crcs)

    @property
    def nbytes(self) -> int:
        """Sample bytes written so far."""
        return self._offsets[-1] - HEADER_SIZE

    def open(self) -> Self:
        if self._file is None and not self._finished:
            self._file = self.fs.open(self.path, "wb")
            self._file.write(_unfinished_header())
        return self

    def write(self, sample: bytes | bytearray | memoryview) -> int:
        """Append one sample; return its index in the shard."""
        if self._finished:
            raise ValueError(f"write to a closed RecordWriter for {self.path}")
        self.open()
        self._buffer += sample
        self._offsets.append(self._offsets[-1] + len(sample))
        self._crcs.append(crc32c.crc32c(sample))
        if len(self._buffer) >= self.buffer_size:
            self._drain()
        return len(self._crcs) - 1

    def _drain(self) -> None:
        if self._buffer:
            self._file.write(self._buffer)
            self._tail_crc = crc32c.crc32c(self._buffer, self._tail_crc)
            self._buffer = bytearray()

    def close(self) -> None:
        """Write the index and the header, and close the file. Idempotent."""
        if self._finished:
            return
        self.open()
        try:
            self._drain()
            index = encode_index(self._offsets, self._crcs)
            self._file.write(index)
            self._tail_crc = crc32c.crc32c(index, self._tail_crc)
            index_crc = crc32c.crc32c(index)
            header = encode_header(self.count, self._offsets[-1], index_crc)
            self._file.seek(0)
            self._file.write(header)
        finally:
            self._finished = True
            self._file.close()
        tail = self._offsets[-1] - HEADER_SIZE + len(index)
        self.file_size, self.index_crc = HEADER_SIZE + tail, index_crc
        self.file_crc = crc32c_combine(crc32c.crc32c(header), self._tail_crc, tail)

    def abort(self) -> None:
        """Close the file without the index: it stays an unfinished shard."""
        if self._file is not None and not self._finished:
            self._finished = True
            self._file.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class RecordReader:
    """Random access to the samples of one shard; the index is read on first use and cached."""

    def __init__(self, fs: RangeReader, path: str) -> None:
        self.fs, self.path = fs, path
        self._index: ShardIndex | None = None

    def __repr__(self) -> str:
        return f"<RecordReader {self.path!r}>"

    @property
    def index(self) -> ShardIndex:
        if self._index is None:
            self._index = load_indexes(self.fs, [self.path])[0]
        return self._index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> bytes:
        return self.read_many([i])[0]

    def read_many(self, indices: Sequence[int]) -> list[bytes]:
        """Samples `indices` (negative counts from the end) through one `read_ranges` call."""
        index, n = self.index, len(self.index)
        wanted = []
        for i in indices:
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise IndexError(f"sample {i} of a shard of {n} samples ({self.path})")
            wanted.append(j)
        data = self.fs.read_ranges([(self.path, *index.span(j)) for j in wanted])
        return [check_sample(self.path, index, j, d) for j, d in zip(wanted, data, strict=True)]

    def __iter__(self) -> Any:
        for start in range(0, len(self), 256):
            yield from self.read_many(range(start, min(start + 256, len(self))))
