"""The dataset manifest's pure rules (client/_manifest.py): encoding round trips, where a
path puts the manifest, and a table of malformed manifests, each a ManifestError naming
the file."""

from __future__ import annotations

import errno
import json
from typing import Any

import pytest

from emberfs.client._manifest import (
    FORMAT, MANIFEST_VERSION, Manifest, ManifestError, ShardEntry, check_relative, decode_manifest,
    encode_manifest, locate,
)
from emberfs.client.data import ShardError

W = "/ds/manifest.json"
A = ShardEntry("shard-00000.rec", 2, 100, 0xFFFFFFFF, 0, "shard-00000.keys.json")
B = ShardEntry("sub/shard-00001.rec", 0, 40, 1, 2)


@pytest.mark.parametrize("entries", [[], [A], [A, B], [B, A]])
def test_round_trip(entries: list[ShardEntry]) -> None:
    data = encode_manifest(entries)
    assert decode_manifest(W, data) == entries
    document = json.loads(data)
    assert document["format"] == FORMAT and document["version"] == MANIFEST_VERSION
    assert document["total_samples"] == sum(e.count for e in entries)
    assert document["total_bytes"] == sum(e.size for e in entries)
    assert data.count(b"\n") == 2 + len(entries) + (1 if entries else 0)  # one line per shard


def test_manifest_views() -> None:
    m = Manifest(W, "/ds", (A, B))
    assert m.paths == ["/ds/shard-00000.rec", "/ds/sub/shard-00001.rec"]
    assert m.key_paths == ["/ds/shard-00000.keys.json", None]
    assert (m.counts, m.sizes, m.crcs, m.index_crcs) == ([2, 0], [100, 40], [0xFFFFFFFF, 1], [0, 2])
    assert (m.total_samples, m.total_bytes) == (2, 140)


@pytest.mark.parametrize(
    "path, where",
    [
        ("/ds", ("/ds", "/ds/manifest.json")),
        ("/ds/", ("/ds", "/ds/manifest.json")),
        ("/a/b/../ds", ("/a/ds", "/a/ds/manifest.json")),
        ("/ds/manifest.json", ("/ds", "/ds/manifest.json")),
        ("/ds/v2.json", ("/ds", "/ds/v2.json")),
        ("ds", ("ds", "ds/manifest.json")),
        ("m.json", (".", "m.json")),
        ("/", ("/", "/manifest.json")),
    ],
)
def test_locate(path: str, where: tuple[str, str]) -> None:
    assert locate(path) == where


def test_locate_refuses_an_empty_path() -> None:
    with pytest.raises(ValueError):
        locate("")


@pytest.mark.parametrize("path", ["a.rec", "sub/a.rec", "a..b.rec", "...", ".hidden.rec"])
def test_plain_relative_paths(path: str) -> None:
    assert check_relative(W, path) == path


def _doc(**changes: Any) -> dict[str, Any]:
    shard = {"path": "s.rec", "samples": 1, "bytes": 60, "crc32c": 5, "index_crc32c": 6}
    document: dict[str, Any] = {"format": FORMAT, "version": 1, "total_samples": 1, "total_bytes": 60,
                                "shards": [shard]}
    for name, value in changes.items():
        if name.startswith("shard_"):
            shard[name.removeprefix("shard_")] = value
        else:
            document[name] = value
    return document


def _bytes(document: Any) -> bytes:
    return json.dumps(document).encode()


BAD = [
    (b"", "not JSON"),
    (b"{", "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    (b"[]", "not a JSON object but list"),
    (_bytes(_doc(format="webdataset")), "format 'webdataset'"),
    (_bytes({k: v for k, v in _doc().items() if k != "format"}), "format None"),
    (_bytes(_doc(version=2)), "manifest version 2; this reader knows version 1"),
    (_bytes(_doc(version="1")), "manifest version '1'"),
    (_bytes(_doc(shards={"s.rec": 1})), "'shards' must be a list"),
    (_bytes(_doc(shards=["s.rec"])), "a shard must be a JSON object"),
    (_bytes(_doc(shard_path="/etc/passwd")), "not a plain relative path"),
    (_bytes(_doc(shard_path="../other/s.rec")), "not a plain relative path"),
    (_bytes(_doc(shard_path="a/../../s.rec")), "not a plain relative path"),
    (_bytes(_doc(shard_path="./s.rec")), "not a plain relative path"),
    (_bytes(_doc(shard_path="a//s.rec")), "not a plain relative path"),
    (_bytes(_doc(shard_path="dir/")), "not a plain relative path"),
    (_bytes(_doc(shard_path="")), "non-empty string"),
    (_bytes(_doc(shard_path=7)), "non-empty string"),
    (_bytes(_doc(shard_keys="../keys.json")), "keys path '../keys.json' is not a plain relative path"),
    (_bytes(_doc(shard_samples=-1)), "'samples' must be an integer >= 0"),
    (_bytes(_doc(shard_samples=True)), "'samples' must be an integer"),
    (_bytes(_doc(shard_samples=1.0)), "'samples' must be an integer"),
    (_bytes(_doc(shard_bytes=51)), "'bytes' must be an integer >= 52"),
    (_bytes(_doc(shard_crc32c=1 << 32)), "'crc32c' must be an integer in \\[0, 4294967296\\)"),
    (_bytes(_doc(shard_index_crc32c=None)), "'index_crc32c' must be an integer"),
    (_bytes(_doc(total_samples=2)), "'total_samples' is 2, its shards add up to 1"),
    (_bytes(_doc(total_bytes=None)), "'total_bytes' is None, its shards add up to 60"),
    (_bytes(_doc(shards=[_doc()["shards"][0]] * 2, total_samples=2, total_bytes=120)), "'s.rec' is listed twice"),
    (_bytes(_doc(shard_keys="s.rec")), "'s.rec' is listed twice"),
]


@pytest.mark.parametrize("data, message", BAD)
def test_bad_manifests(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        decode_manifest(W, data)
    assert info.value.filename == W and info.value.errno == errno.EBADMSG
    assert isinstance(info.value, ShardError) and isinstance(info.value, OSError)
    assert str(info.value).startswith(f"[Errno {errno.EBADMSG}] bad dataset: ")


def test_unknown_fields_are_ignored() -> None:
    document = _doc(created_by="another tool", shard_sha256="00")
    assert decode_manifest(W, _bytes(document)) == [ShardEntry("s.rec", 1, 60, 5, 6)]
