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
`listdir_attrs`) or `LocalFiles` (then paths are local and made absolute). Errors: the
OSError family naming the path; a bad or missing manifest, or shards that disagree with
it, raise `ManifestError` (a `ShardError`).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import os
import posixpath
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

import crc32c

from ._manifest import (
    MANIFEST_NAME, Manifest, ManifestError, ShardEntry, check_relative, decode_manifest, encode_manifest,
    locate,
)
from .data import HEADER_SIZE, LocalFiles, RangeReader, RecordWriter, index_size

__all__ = [
    "MANIFEST_NAME", "MIN_MAX_BYTES", "Manifest", "ManifestError", "ShardWriter", "WriterState", "read_keys",
    "read_manifest", "shard_problems", "verify_manifest",
]

SHARD_NAME = "shard-{:05d}.rec"
KEYS_SUFFIX = ".keys.json"
MIN_MAX_BYTES = HEADER_SIZE + index_size(1)  # a shard of one empty sample
_VERIFY_PIECE = 8 << 20  # bytes per read while verifying a shard


# -- what a dataset needs of a file system beyond RangeReader ------------------------------


class _Names(Protocol):
    def makedirs(self, path: str) -> None: ...
    def exists(self, path: str) -> bool: ...
    def remove(self, path: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...  # replaces dst
    def file_sizes(self, directory: str) -> dict[str, int]: ...  # one listing: name -> bytes


class _LocalNames:
    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def file_sizes(self, directory: str) -> dict[str, int]:
        with os.scandir(directory) as entries:
            return {e.name: e.stat().st_size for e in entries if e.is_file()}


class _ClientNames:
    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def makedirs(self, path: str) -> None:
        self.fs.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def remove(self, path: str) -> None:
        self.fs.remove(path)

    def rename(self, src: str, dst: str) -> None:
        self.fs.rename(src, dst)

    def file_sizes(self, directory: str) -> dict[str, int]:
        return {name: st.st_size for name, st in self.fs.listdir_attrs(directory)}


_CLIENT_CALLS = ("makedirs", "exists", "remove", "rename", "listdir_attrs")


def _names_of(fs: RangeReader) -> _Names:
    if isinstance(fs, LocalFiles):
        return _LocalNames()
    missing = [name for name in _CLIENT_CALLS if not callable(getattr(fs, name, None))]
    if missing:
        raise TypeError(f"{fs!r} cannot hold a dataset: it has no {', '.join(missing)} "
                        "(use a SyncClient or LocalFiles)")
    return _ClientNames(fs)


def _root(fs: RangeReader, path: str) -> str:
    return os.path.abspath(path) if isinstance(fs, LocalFiles) else path


# -- writing ---------------------------------------------------------------------------------


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
        self.root, self.manifest_path = locate(_root(fs, root))
        if self.manifest_path != posixpath.join(self.root, MANIFEST_NAME):
            raise ValueError(f"{root}: a ShardWriter takes the dataset's directory, not a manifest file")
        self.overwrite, self.buffer_size = overwrite, buffer_size
        self.state = WriterState.NEW
        self._names = _names_of(fs)
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


# -- reading and checking --------------------------------------------------------------------


def read_manifest(fs: RangeReader, path: str, *, check_sizes: bool = True) -> Manifest:
    """The dataset at `path` (its directory, or its manifest file).

    check_sizes: also check that every listed shard and keys file exists and each shard
    has the listed size, from one directory listing per directory holding shards (no
    shard is read). ManifestError names what is missing or wrong.
    """
    root, manifest_path = locate(_root(fs, path))
    try:
        data = fs.read_file(manifest_path)
    except FileNotFoundError:
        raise ManifestError("no manifest: not a dataset, or its writer never finished", manifest_path,
                            errno.ENOENT) from None
    except IsADirectoryError:
        raise ManifestError("the manifest is a directory", manifest_path) from None
    manifest = Manifest(manifest_path, root, tuple(decode_manifest(manifest_path, data)))
    if check_sizes:
        _check_sizes(_names_of(fs), manifest)
    return manifest


def _check_sizes(names: _Names, manifest: Manifest) -> None:
    listings: dict[str, dict[str, int]] = {}

    def size_of(relative: str) -> int | None:
        directory, name = posixpath.split(posixpath.join(manifest.root, relative))
        if directory not in listings:
            try:
                listings[directory] = names.file_sizes(directory)
            except (FileNotFoundError, NotADirectoryError):
                listings[directory] = {}
        return listings[directory].get(name)

    for entry in manifest.entries:
        for relative in (entry.path, entry.keys):
            if relative is not None and size_of(relative) is None:
                raise ManifestError(f"{relative!r}, listed in the manifest, is missing",
                                    posixpath.join(manifest.root, relative), errno.ENOENT)
        actual = size_of(entry.path)
        if actual != entry.size:
            raise ManifestError(f"the shard is {actual} bytes, the manifest says {entry.size}",
                                posixpath.join(manifest.root, entry.path))


def read_keys(fs: RangeReader, manifest: Manifest, shard: int) -> list[str | None]:
    """The keys of shard number `shard` (one per sample), or Nones if it has no keys file."""
    entry = manifest.entries[shard]
    if entry.keys is None:
        return [None] * entry.count
    path = posixpath.join(manifest.root, check_relative(manifest.path, entry.keys, "keys path"))
    try:
        keys = json.loads(fs.read_file(path))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"the keys file is not JSON ({exc})", path) from None
    if not isinstance(keys, list) or len(keys) != entry.count or not all(k is None or isinstance(k, str)
                                                                        for k in keys):
        raise ManifestError(f"the keys file must be a list of {entry.count} strings or nulls", path)
    return keys


def _file_crc(fs: RangeReader, path: str, size: int, progress: Callable[[int], None]) -> tuple[int, int]:
    """(CRC32C, bytes) of the file, read in pieces; stops one piece past `size`."""
    crc, done = 0, 0
    with fs.open(path, "rb") as f:
        for _ in range(size // _VERIFY_PIECE + 2):
            piece = f.read(_VERIFY_PIECE)
            if not piece:
                break
            crc, done = crc32c.crc32c(piece, crc), done + len(piece)
            progress(len(piece))
    return crc, done


def shard_problems(
    fs: RangeReader, manifest: Manifest, progress: Callable[[int], None] | None = None
) -> list[tuple[str, str]]:
    """(path, what is wrong) for every shard or keys file that fails a full read: each
    shard's size and whole-file CRC32C, each keys file's shape. progress(n) gets the
    bytes read as they are."""
    problems: list[tuple[str, str]] = []
    for k, (entry, path) in enumerate(zip(manifest.entries, manifest.paths, strict=True)):
        try:
            crc, size = _file_crc(fs, path, entry.size, progress or (lambda n: None))
            if size != entry.size:
                problems.append((path, f"{size}{'+' if size > entry.size else ''} bytes, the manifest says "
                                       f"{entry.size}"))
            elif crc != entry.crc:
                problems.append((path, f"CRC32C {crc:08x}, the manifest says {entry.crc:08x}: the shard is corrupt"))
            read_keys(fs, manifest, k)
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:
            problems.append((str(exc.filename or path), exc.strerror or str(exc)))
    return problems


def verify_manifest(fs: RangeReader, path: str, progress: Callable[[int], None] | None = None) -> Manifest:
    """read_manifest, then read every shard whole and check its CRC32C; ManifestError
    naming every shard that fails."""
    manifest = read_manifest(fs, path)
    problems = shard_problems(fs, manifest, progress)
    if problems:
        listed = "; ".join(f"{p}: {why}" for p, why in problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ManifestError(f"{len(problems)} of {len(manifest.entries)} shards fail: {listed}{more}", manifest.path)
    return manifest
