"""Datasets of many record shards: write them (`ShardWriter`), open them by one path
(`read_manifest`), and check every byte (`verify_manifest`).

    with SyncClient(meta) as fs:
        with ShardWriter(fs, "/datasets/x", max_bytes=256 << 20, max_count=100_000) as w:
            for name, sample in samples:
                w.write(sample, key=name)
        ds = read_manifest(fs, "/datasets/x")        # ds.paths, ds.counts, ds.total_samples

A writer fills `shard-00000.rec`, `shard-00001.rec`, ... (the format of `data.py`)
and starts the next shard before a sample would take the current one past `max_bytes`
or `max_count`. A shard is larger than `max_bytes` only when one sample alone does not
fit: such a sample gets a shard of its own. Closing the writer writes the manifest
(`_manifest.py`) last, under a temporary name renamed into place, so a dataset
directory either has a manifest that matches its shards or none; a writer left by an
exception writes none, keeps the shards it wrote (the last one unfinished), and adds a
note saying so to the exception (shown with its traceback). `overwrite=True` removes an old
manifest before the first shard is touched; old shards past the new last one stay, unlisted.

fs is a `SyncClient` (anything with its `makedirs`, `exists`, `remove`, `rename` and
`listdir_attrs`) or `LocalFiles` (then paths are local and made absolute:
`_datasetfs.py`). Errors: the OSError family naming the path; a bad or missing manifest,
or shards that disagree with it, raise `ManifestError` (a `ShardError`). The reading
side lives in `_datasetread.py`, re-exported here.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import posixpath
import uuid
from types import TracebackType
from typing import Self

from ._datasetfs import dataset_path, names_of
from ._datasetread import read_keys, read_manifest, shard_problems, verify_manifest
from ._manifest import MANIFEST_NAME, Manifest, ManifestError, ShardEntry, encode_manifest, locate
from .data import HEADER_SIZE, RangeReader, RecordWriter, index_size

__all__ = [
    "MANIFEST_NAME", "MIN_MAX_BYTES", "Manifest", "ManifestError", "ShardWriter", "WriterState", "read_keys",
    "read_manifest", "shard_problems", "verify_manifest",
]

SHARD_NAME = "shard-{:05d}.rec"
KEYS_SUFFIX = ".keys.json"
MIN_MAX_BYTES = HEADER_SIZE + index_size(1)  # a shard of one empty sample


class WriterState(enum.Enum):
    NEW = "new"  # nothing touched yet
    OPEN = "open"  # the directory exists, an old manifest is gone; shards being written
    CLOSED = "closed"  # the manifest is in place: a finished dataset
    ABORTED = "aborted"  # left by an error: no manifest


class ShardWriter:
    """Write a dataset of record shards and its manifest (see the module docstring)."""

    def __init__(
        self, fs: RangeReader, root: str, *, max_bytes: int = 256 << 20, max_count: int = 100_000,
        overwrite: bool = False, buffer_size: int = 4 << 20,
    ) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES} (a shard of one empty sample), "
                             f"not {max_bytes}")
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, not {max_count}")
        self.fs, self.max_bytes, self.max_count = fs, max_bytes, max_count
        self.root, self.manifest_path = locate(dataset_path(fs, root))
        if self.manifest_path != posixpath.join(self.root, MANIFEST_NAME):
            raise ValueError(f"{root}: a ShardWriter takes the dataset's directory, not a manifest file")
        self.overwrite, self.buffer_size = overwrite, buffer_size
        self.state = WriterState.NEW
        self._names = names_of(fs)
        self._entries: list[ShardEntry] = []
        self._shard: RecordWriter | None = None
        self._keys: list[str | None] = []
        self._count = 0
        self._manifest: Manifest | None = None

    def __repr__(self) -> str:
        return f"<ShardWriter {self.root!r} {self.state.value} {self._count} samples>"

    @property
    def count(self) -> int:
        """Samples written so far."""
        return self._count

    @property
    def shards(self) -> int:
        """Shards finished so far."""
        return len(self._entries)

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            raise ValueError(f"{self.root}: the manifest exists once the writer is closed")
        return self._manifest

    def open(self) -> Self:
        """Make the directory and clear the way for the manifest (done by the first write too)."""
        if self.state is WriterState.NEW:
            self._names.makedirs(self.root)
            if self._names.exists(self.manifest_path):
                if not self.overwrite:
                    raise FileExistsError(errno.EEXIST, "a dataset is already there (overwrite=True replaces it)",
                                          self.manifest_path)
                self._names.remove(self.manifest_path)  # first: from here on no manifest lists the old shards
            self.state = WriterState.OPEN
        elif self.state is not WriterState.OPEN:
            raise ValueError(f"{self.root}: the writer is {self.state.value}")
        return self

    def write(self, sample: bytes | bytearray | memoryview, key: str | None = None) -> int:
        """Append one sample (and its key, if any); return its index in the dataset."""
        if key is not None and not isinstance(key, str):
            raise TypeError(f"a sample key is a str or None, not {type(key).__name__}")
        self.open()
        if isinstance(sample, memoryview) and (sample.itemsize != 1 or sample.ndim != 1):
            sample = sample.cast("B")  # len() is then the byte count, as RecordWriter assumes
        size = len(sample)
        shard = self._shard
        if shard is not None and shard.count and (
            shard.count >= self.max_count
            or HEADER_SIZE + shard.nbytes + size + index_size(shard.count + 1) > self.max_bytes
        ):
            self._finish_shard()
            shard = None
        if shard is None:
            shard = self._shard = RecordWriter(self.fs, self._path(SHARD_NAME.format(len(self._entries))),
                                               buffer_size=self.buffer_size).open()
        shard.write(sample)
        self._keys.append(key)
        self._count += 1
        return self._count - 1

    def close(self) -> Manifest:
        """Finish the last shard and publish the manifest; the dataset's Manifest. Idempotent."""
        if self.state is WriterState.CLOSED:
            return self.manifest
        self.open()
        try:
            if self._shard is not None:
                self._finish_shard()
            self._publish(encode_manifest(self._entries))
        except BaseException as exc:
            self.abort()
            exc.add_note(self._aborted_note())
            raise
        self.state = WriterState.CLOSED
        self._manifest = Manifest(self.manifest_path, self.root, tuple(self._entries))
        return self._manifest

    def abort(self) -> None:
        """Stop without a manifest; the shards written so far stay (the last unfinished)."""
        if self.state in (WriterState.CLOSED, WriterState.ABORTED):
            return
        if self._shard is not None:
            self._shard.abort()
            self._shard = None
        self.state = WriterState.ABORTED

    def _aborted_note(self) -> str:
        return (f"ShardWriter: {self.root} has no manifest: the dataset is incomplete "
                f"({len(self._entries)} shards finished, {self._count} samples written)")

    def _path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def _finish_shard(self) -> None:
        shard, keys = self._shard, self._keys
        assert shard is not None
        self._shard, self._keys = None, []
        shard.close()
        assert shard.file_size is not None and shard.file_crc is not None and shard.index_crc is not None
        name = posixpath.basename(shard.path)
        keys_name = None
        if any(k is not None for k in keys):
            keys_name = name.removesuffix(".rec") + KEYS_SUFFIX
            with self.fs.open(self._path(keys_name), "wb") as f:
                f.write(json.dumps(keys).encode())
        self._entries.append(ShardEntry(name, shard.count, shard.file_size, shard.file_crc, shard.index_crc, keys_name))

    def _publish(self, document: bytes) -> None:
        """Write the manifest under a temporary name, then rename it into place (atomic)."""
        temporary = self._path(f".{MANIFEST_NAME}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with self.fs.open(temporary, "wb") as f:
                f.write(document)
            self._names.rename(temporary, self.manifest_path)
        except BaseException:
            with contextlib.suppress(OSError):  # never written, or the fs is gone: the first error says more
                self._names.remove(temporary)
            raise

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        self.abort()
        exc.add_note(self._aborted_note())
