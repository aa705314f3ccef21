"""The dataset manifest: which record shards make a dataset, and what each must hold.

A `ShardWriter` writes `manifest.json` into the dataset's directory last, by a rename,
so a directory with a manifest holds a finished dataset and one without holds none.
Format (JSON, UTF-8), version 1:

    {"format": "emberfs-record-shards", "version": 1, "total_samples": 1500, "total_bytes": 1067083,
     "shards": [
      {"path": "shard-00000.rec", "samples": 1000, "bytes": 715116, "crc32c": 2614445445,
       "index_crc32c": 3184490923, "keys": "shard-00000.keys.json"},
      ...
     ]}

    (the writer puts each shard on one line)

- `path`, `keys`: relative to the manifest's directory, below it (no `..`, no `.`,
  no empty part, not absolute). `keys` is optional: a JSON list with one key (a string
  or null) per sample of the shard, such as the file a sample came from.
- `samples`, `bytes`: the shard's sample count and file size; `crc32c`: CRC32C of the
  whole shard file; `index_crc32c`: the CRC its header carries for its index.
- `total_samples`, `total_bytes`: the sums over the shards (of samples, of file sizes).
- Fields a version-1 reader does not know are ignored; a change that old readers must
  not misread gets a new version.

This module is pure: encoding, decoding and validation of the bytes. Reading and
writing them is in `shards.py`.
"""

from __future__ import annotations

import errno
import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .data import HEADER_SIZE, ShardError, index_size

__all__ = [
    "FORMAT", "MANIFEST_NAME", "MANIFEST_VERSION", "Manifest", "ManifestError", "ShardEntry", "check_relative",
    "decode_manifest", "encode_manifest", "locate", "manifest_of",
]

FORMAT = "emberfs-record-shards"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
_U32 = 1 << 32


class ManifestError(ShardError):
    """A dataset whose manifest is missing, malformed, or disagrees with its shards.

    `ManifestError(why, path)`: an OSError naming the manifest (or the shard at fault);
    errno EBADMSG, or ENOENT when the manifest or a shard it lists does not exist. A
    ShardError too, so one `except ShardError` covers every broken dataset.
    """

    def __init__(self, why: str, path: str, code: int = errno.EBADMSG) -> None:
        OSError.__init__(self, code, f"bad dataset: {why}", path)


@dataclass(frozen=True)
class ShardEntry:
    """One shard as the manifest lists it (paths relative to the manifest's directory)."""

    path: str
    count: int
    size: int
    crc: int  # CRC32C of the whole file
    index_crc: int
    keys: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A dataset as read from its manifest; shard paths absolute (joined to `root`)."""

    path: str  # the manifest file
    root: str  # the directory the shard paths are relative to
    entries: tuple[ShardEntry, ...]

    @property
    def paths(self) -> list[str]:
        return [posixpath.join(self.root, e.path) for e in self.entries]

    @property
    def key_paths(self) -> list[str | None]:
        return [None if e.keys is None else posixpath.join(self.root, e.keys) for e in self.entries]

    @property
    def counts(self) -> list[int]:
        return [e.count for e in self.entries]

    @property
    def sizes(self) -> list[int]:
        return [e.size for e in self.entries]

    @property
    def crcs(self) -> list[int]:
        return [e.crc for e in self.entries]

    @property
    def index_crcs(self) -> list[int]:
        return [e.index_crc for e in self.entries]

    @property
    def total_samples(self) -> int:
        return sum(e.count for e in self.entries)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


def locate(path: str) -> tuple[str, str]:
    """(dataset directory, manifest file) for `path`, either of the two.

    A path whose last part ends in `.json` is the manifest file; any other is the
    directory, holding `manifest.json`.
    """
    if not path:
        raise ValueError("an empty dataset path")
    path = posixpath.normpath(path)
    if path.endswith(".json"):
        return posixpath.dirname(path) or ".", path
    return path, posixpath.join(path, MANIFEST_NAME)


def check_relative(where: str, path: Any, what: str = "shard path") -> str:
    """`path` if it names something below the manifest's directory, else ManifestError."""
    if not isinstance(path, str) or not path:
        raise ManifestError(f"a {what} must be a non-empty string, not {path!r}", where)
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in path:
        raise ManifestError(f"{what} {path!r} is not a plain relative path below the dataset's directory", where)
    return path


def encode_manifest(entries: Sequence[ShardEntry]) -> bytes:
    shards = []
    for e in entries:
        shard: dict[str, Any] = {
            "path": e.path, "samples": e.count, "bytes": e.size, "crc32c": e.crc, "index_crc32c": e.index_crc,
        }
        if e.keys is not None:
            shard["keys"] = e.keys
        shards.append(shard)
    head = json.dumps({
        "format": FORMAT, "version": MANIFEST_VERSION,
        "total_samples": sum(e.count for e in entries), "total_bytes": sum(e.size for e in entries),
    })
    lines = ",\n".join(f"  {json.dumps(shard)}" for shard in shards)  # one shard a line: readable, diffable
    listed = f"[\n{lines}\n ]" if shards else "[]"
    return f"{head[:-1]},\n \"shards\": {listed}}}\n".encode()


def _integer(where: str, shard: dict[str, Any], name: str, low: int, high: int | None = None) -> int:
    value = shard.get(name)
    if type(value) is not int or value < low or (high is not None and value >= high):
        bound = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ManifestError(f"shard {shard.get('path')!r}: {name!r} must be an integer {bound}, not {value!r}", where)
    return value


def _entry(where: str, shard: Any) -> ShardEntry:
    if not isinstance(shard, dict):
        raise ManifestError(f"a shard must be a JSON object, not {shard!r:.80}", where)
    path = check_relative(where, shard.get("path"))
    count = _integer(where, shard, "samples", 0)
    size = _integer(where, shard, "bytes", HEADER_SIZE + index_size(count))
    keys = shard.get("keys")
    return ShardEntry(
        path, count, size, _integer(where, shard, "crc32c", 0, _U32), _integer(where, shard, "index_crc32c", 0, _U32),
        None if keys is None else check_relative(where, keys, "keys path"),
    )


def decode_manifest(where: str, data: bytes) -> list[ShardEntry]:
    """The shards a manifest lists, after checking every field; `where` names the file."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"not JSON ({exc})", where) from None
    if not isinstance(document, dict):
        raise ManifestError(f"not a JSON object but {type(document).__name__}", where)
    if document.get("format") != FORMAT:
        raise ManifestError(f"format {document.get('format')!r}, not {FORMAT!r}", where)
    version = document.get("version")
    if version != MANIFEST_VERSION:
        raise ManifestError(f"manifest version {version!r}; this reader knows version {MANIFEST_VERSION}", where)
    shards = document.get("shards")
    if not isinstance(shards, list):
        raise ManifestError(f"'shards' must be a list, not {shards!r:.80}", where)
    entries = [_entry(where, s) for s in shards]
    seen: set[str] = set()
    for name in [e.path for e in entries] + [e.keys for e in entries if e.keys is not None]:
        if name in seen:
            raise ManifestError(f"{name!r} is listed twice", where)
        seen.add(name)
    for total, actual in (("total_samples", sum(e.count for e in entries)),
                          ("total_bytes", sum(e.size for e in entries))):
        if document.get(total) != actual:
            raise ManifestError(f"{total!r} is {document.get(total)!r}, its shards add up to {actual}", where)
    return entries


def manifest_of(where: str, data: bytes) -> Manifest:
    """The Manifest in `data`, read from the manifest file `where`."""
    root, path = locate(where)
    return Manifest(path, root, tuple(decode_manifest(path, data)))
