"""Opening a dataset by its manifest (`read_manifest`, `read_keys`) and checking every
byte of it (`shard_problems`, `verify_manifest`); re-exported by `shards.py`."""

from __future__ import annotations

import errno
import json
import posixpath
from collections.abc import Callable

import crc32c

from ._datasetfs import Names, dataset_path, names_of
from ._manifest import Manifest, ManifestError, check_relative, decode_manifest, locate
from .data import RangeReader

__all__ = ["read_keys", "read_manifest", "shard_problems", "verify_manifest"]

_VERIFY_PIECE = 8 << 20  # bytes per read while verifying a shard


def read_manifest(fs: RangeReader, path: str, *, check_sizes: bool = True) -> Manifest:
    """The dataset at `path` (its directory, or its manifest file).

    check_sizes: also check that every listed shard and keys file exists and each shard
    has the listed size, from one directory listing per directory holding shards (no
    shard is read). ManifestError names what is missing or wrong.
    """
    root, manifest_path = locate(dataset_path(fs, path))
    try:
        data = fs.read_file(manifest_path)
    except FileNotFoundError:
        raise ManifestError("no manifest: not a dataset, or its writer never finished", manifest_path,
                            errno.ENOENT) from None
    except IsADirectoryError:
        raise ManifestError("the manifest is a directory", manifest_path) from None
    manifest = Manifest(manifest_path, root, tuple(decode_manifest(manifest_path, data)))
    if check_sizes:
        _check_sizes(names_of(fs), manifest)
    return manifest


def _check_sizes(names: Names, manifest: Manifest) -> None:
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
