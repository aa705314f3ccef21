"""ShardWriter, read_manifest and verify_manifest on local files (`LocalFiles`, the same
calls as a SyncClient): rotation by size and count, the manifest's contents, a manifest
that appears only complete and last, aborted writers, and every way a dataset on disk can
disagree with its manifest."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import crc32c
import pytest

from emberfs.client.data import HEADER_SIZE, LocalFiles, RecordReader, ShardError, decode_header, index_size
from emberfs.client.shards import (
    MIN_MAX_BYTES, ManifestError, ShardWriter, WriterState, read_keys, read_manifest, shard_problems,
    verify_manifest,
)


def sample(i: int, size: int) -> bytes:
    return (i.to_bytes(4, "little") * (size // 4 + 1))[:size]


def write(root: Path, sizes: list[int], **options: Any) -> ShardWriter:
    with ShardWriter(LocalFiles(), str(root), **options) as w:
        for i, size in enumerate(sizes):
            assert w.write(sample(i, size), key=f"k{i}") == i
    return w


def shard_size(sizes: list[int]) -> int:
    return HEADER_SIZE + sum(sizes) + index_size(len(sizes))


# -- rotation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes, max_bytes, max_count, counts",
    [
        ([], 1 << 20, 10, []),
        ([5] * 10, 1 << 20, 3, [3, 3, 3, 1]),
        ([5] * 9, 1 << 20, 3, [3, 3, 3]),
        ([5] * 4, 1 << 20, 1, [1, 1, 1, 1]),
        ([0] * 5, MIN_MAX_BYTES, 100, [1, 1, 1, 1, 1]),  # the smallest limit: one empty sample each
        ([10] * 6, shard_size([10, 10]), 100, [2, 2, 2]),  # exactly at the limit: it stays
        ([10] * 6, shard_size([10, 10]) - 1, 100, [1] * 6),  # one byte short: it rotates
        ([10, 500, 10], 100, 100, [1, 1, 1]),  # a sample alone over the limit gets its own shard
        ([500, 10, 10], 100, 100, [1, 2]),
        ([30, 30, 30, 30, 1], shard_size([30, 30]), 3, [2, 2, 1]),
        ([1] * 7, shard_size([1] * 5), 3, [3, 3, 1]),  # count first
    ],
)
def test_rotation(tmp_path: Path, sizes: list[int], max_bytes: int, max_count: int, counts: list[int]) -> None:
    w = write(tmp_path / "ds", sizes, max_bytes=max_bytes, max_count=max_count)
    m = read_manifest(LocalFiles(), str(tmp_path / "ds"))
    assert m.counts == counts and w.shards == len(counts) and w.count == len(sizes)
    start = 0
    for path, count, size in zip(m.paths, m.counts, m.sizes, strict=True):
        mine = sizes[start:start + count]
        assert size == shard_size(mine) == os.path.getsize(path)
        assert size <= max_bytes or count == 1, "only a lone sample may pass the limit"
        assert list(RecordReader(LocalFiles(), path)) == [sample(i, s) for i, s in enumerate(mine, start)]
        start += count


def test_a_shard_is_full_when_its_next_sample_would_not_fit(tmp_path: Path) -> None:
    sizes = [(i * 37) % 300 for i in range(200)]
    max_bytes = 2000
    m = write(tmp_path / "ds", sizes, max_bytes=max_bytes).manifest
    start = 0
    for count, size in zip(m.counts[:-1], m.sizes[:-1], strict=True):
        start += count
        assert size + sizes[start] + 12 > max_bytes  # the next shard's first sample did not fit


def test_memoryviews_count_in_bytes(tmp_path: Path) -> None:
    from array import array

    words = array("I", range(10))  # 40 bytes, 10 items
    with ShardWriter(LocalFiles(), str(tmp_path / "ds"), max_bytes=shard_size([40])) as w:
        w.write(memoryview(words))
        w.write(memoryview(words))
    m = w.manifest
    assert m.counts == [1, 1]
    assert RecordReader(LocalFiles(), m.paths[0])[0] == words.tobytes()


# -- the manifest ----------------------------------------------------------------------------


def test_manifest_contents(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    w = write(root, [100] * 10, max_count=4)
    document = json.loads((root / "manifest.json").read_bytes())
    assert document["format"] == "emberfs-record-shards" and document["version"] == 1
    assert [s["path"] for s in document["shards"]] == ["shard-00000.rec", "shard-00001.rec", "shard-00002.rec"]
    assert document["total_samples"] == 10
    m = read_manifest(LocalFiles(), str(root))
    assert m == w.manifest
    assert m.path == str(root / "manifest.json") and m.root == str(root)
    assert m.paths == [str(root / f"shard-0000{k}.rec") for k in range(3)]
    assert m.counts == [4, 4, 2] and m.total_samples == 10
    for path, size, crc, index_crc in zip(m.paths, m.sizes, m.crcs, m.index_crcs, strict=True):
        data = Path(path).read_bytes()
        assert (size, crc, index_crc) == (len(data), crc32c.crc32c(data), decode_header(path, data).index_crc)
    assert m.total_bytes == sum(m.sizes)
    assert sorted(os.listdir(root)) == sorted(
        ["manifest.json"] + [f"shard-0000{k}.rec" for k in range(3)] + [f"shard-0000{k}.keys.json" for k in range(3)])


def test_the_manifest_may_be_named_directly_and_relative_roots_become_absolute(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(Path("ds"), [3, 4])
    for path in ("ds", "ds/", "ds/manifest.json", str(tmp_path / "ds")):
        m = read_manifest(LocalFiles(), path)
        assert m.paths == [str(tmp_path / "ds" / "shard-00000.rec")]


def test_keys(tmp_path: Path) -> None:
    fs = LocalFiles()
    with ShardWriter(fs, str(tmp_path / "ds"), max_count=2) as w:
        w.write(b"a", key="cats/1.jpg")
        w.write(b"b")
        w.write(b"c")  # a shard without a key: no keys file
        w.write(b"d")
        w.write(b"e", key="x.jsonl:3")
    m = w.manifest
    assert m.key_paths == [str(tmp_path / "ds" / "shard-00000.keys.json"), None, str(tmp_path / "ds" /
                                                                                      "shard-00002.keys.json")]
    assert [read_keys(fs, m, k) for k in range(3)] == [["cats/1.jpg", None], [None, None], ["x.jsonl:3"]]
    with pytest.raises(TypeError, match="str or None"):
        ShardWriter(fs, str(tmp_path / "other")).write(b"x", key=7)  # type: ignore[arg-type]


def test_an_empty_dataset(tmp_path: Path) -> None:
    m = ShardWriter(LocalFiles(), str(tmp_path / "ds")).close()
    assert (m.paths, m.total_samples, m.total_bytes) == ([], 0, 0)
    assert read_manifest(LocalFiles(), str(tmp_path / "ds")) == m


class _Recording(LocalFiles):
    """LocalFiles that notes each file it opens for writing, and whether a manifest existed then."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root, self.opened = root, []

    def open(self, path: str, mode: str = "rb") -> Any:
        if "w" in mode:
            self.opened.append((os.path.basename(path), (self.root / "manifest.json").exists()))
        return super().open(path, mode)


def test_the_manifest_is_written_last_and_renamed_into_place(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    fs = _Recording(root)
    with ShardWriter(fs, str(root), max_count=2) as w:
        for i in range(5):
            w.write(sample(i, 10), key=str(i))
        assert not (root / "manifest.json").exists()
    names = [name for name, _ in fs.opened]
    assert names[:-1] == ["shard-00000.rec", "shard-00000.keys.json", "shard-00001.rec", "shard-00001.keys.json",
                          "shard-00002.rec", "shard-00002.keys.json"]
    assert names[-1].startswith(".manifest.json.") and names[-1].endswith(".tmp")  # then renamed
    assert not any(existed for _, existed in fs.opened)
    assert sorted(p for p in os.listdir(root) if p.startswith(".")) == []


def test_a_failed_rename_leaves_no_manifest_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ds"

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(errno.EACCES, "refused", dst)

    w = ShardWriter(LocalFiles(), str(root))
    w.write(b"x")
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        w.close()
    assert w.state is WriterState.ABORTED
    assert any("has no manifest" in note for note in info.value.__notes__)
    assert os.listdir(root) == ["shard-00000.rec"]


def test_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write(root, [10] * 5, max_count=1)
    before = {p: (root / p).read_bytes() for p in os.listdir(root)}
    with pytest.raises(FileExistsError) as info:
        ShardWriter(LocalFiles(), str(root)).open()
    assert info.value.filename == str(root / "manifest.json")
    assert {p: (root / p).read_bytes() for p in os.listdir(root)} == before  # nothing touched
    w = ShardWriter(LocalFiles(), str(root), overwrite=True).open()
    assert not (root / "manifest.json").exists()  # gone before any shard is rewritten
    w.write(b"new")
    m = w.close()
    assert m.counts == [1] and list(RecordReader(LocalFiles(), m.paths[0])) == [b"new"]
    assert (root / "shard-00004.rec").exists()  # old shards past the new last one stay, unlisted


def test_an_aborted_writer_leaves_no_manifest_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(RuntimeError) as info, ShardWriter(LocalFiles(), str(root), max_count=2) as w:
        for i in range(5):
            w.write(sample(i, 10))
        raise RuntimeError("the source went away")
    assert w.state is WriterState.ABORTED
    assert info.value.__notes__ == [
        f"ShardWriter: {root} has no manifest: the dataset is incomplete (2 shards finished, 5 samples written)"]
    assert not (root / "manifest.json").exists()
    with pytest.raises(ShardError, match="unfinished"):
        len(RecordReader(LocalFiles(), str(root / "shard-00002.rec")))
    with pytest.raises(ManifestError, match="no manifest") as missing:
        read_manifest(LocalFiles(), str(root))
    assert missing.value.errno == errno.ENOENT and missing.value.filename == str(root / "manifest.json")
    with pytest.raises(ValueError, match="aborted"):
        w.write(b"more")
    with pytest.raises(ValueError, match="aborted"):
        w.close()


def test_close_is_idempotent(tmp_path: Path) -> None:
    w = write(tmp_path / "ds", [1, 2])
    assert w.close() is w.manifest
    with pytest.raises(ValueError, match="closed"):
        w.write(b"x")


@pytest.mark.parametrize(
    "options, message",
    [({"max_bytes": MIN_MAX_BYTES - 1}, "max_bytes must be at least 52"), ({"max_count": 0}, "max_count")],
)
def test_bad_limits(tmp_path: Path, options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShardWriter(LocalFiles(), str(tmp_path), **options)


def test_a_writer_needs_a_directory_path_and_a_file_system_with_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="directory, not a manifest file"):
        ShardWriter(LocalFiles(), str(tmp_path / "ds" / "v2.json"))

    class ReadOnly:
        def read_file(self, path: str) -> bytes:
            return b""

        def open(self, path: str, mode: str = "rb") -> Any:
            raise AssertionError

    with pytest.raises(TypeError, match="no makedirs, exists, remove, rename, listdir_attrs"):
        ShardWriter(ReadOnly(), "/ds")  # type: ignore[arg-type]
    with pytest.raises(ShardError, match="not JSON"):
        read_manifest(ReadOnly(), "/ds", check_sizes=False)  # type: ignore[arg-type]


# -- a dataset that disagrees with its manifest ------------------------------------------------


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write(root, [100] * 6, max_count=2)
    return root


def _edit_manifest(root: Path, change: Any) -> None:
    document = json.loads((root / "manifest.json").read_bytes())
    change(document)
    (root / "manifest.json").write_text(json.dumps(document))


def test_read_manifest_errors(dataset: Path) -> None:
    fs, m = LocalFiles(), str(dataset / "manifest.json")
    (dataset / "shard-00001.rec").rename(dataset / "moved.rec")
    with pytest.raises(ManifestError, match="'shard-00001.rec', listed in the manifest, is missing") as info:
        read_manifest(fs, str(dataset))
    assert info.value.filename == str(dataset / "shard-00001.rec") and info.value.errno == errno.ENOENT
    (dataset / "moved.rec").rename(dataset / "shard-00001.rec")

    with open(dataset / "shard-00002.rec", "ab") as f:
        f.write(b"!")
    with pytest.raises(ManifestError, match="the shard is 265 bytes, the manifest says 264") as info:
        read_manifest(fs, str(dataset))
    assert info.value.filename == str(dataset / "shard-00002.rec")
    assert read_manifest(fs, str(dataset), check_sizes=False).counts == [2, 2, 2]  # the check is optional
    os.truncate(dataset / "shard-00002.rec", 264)

    (dataset / "shard-00000.keys.json").unlink()
    with pytest.raises(ManifestError, match="'shard-00000.keys.json', listed in the manifest, is missing"):
        read_manifest(fs, str(dataset))
    _edit_manifest(dataset, lambda d: d["shards"][0].pop("keys"))
    assert read_manifest(fs, str(dataset)).key_paths[0] is None

    _edit_manifest(dataset, lambda d: d["shards"][1].update(path="../ds/shard-00001.rec"))
    with pytest.raises(ManifestError, match="not a plain relative path") as info:
        read_manifest(fs, str(dataset))
    assert info.value.filename == m

    (dataset / "manifest.json").write_bytes(b'{"format": "emberfs-record-shards", "version": 1, "shards": [')
    with pytest.raises(ManifestError, match="not JSON") as info:
        read_manifest(fs, str(dataset))
    assert info.value.filename == m and info.value.errno == errno.EBADMSG

    (dataset / "manifest.json").write_text(json.dumps({"format": "emberfs-record-shards", "version": 9}))
    with pytest.raises(ManifestError, match="manifest version 9"):
        read_manifest(fs, m)

    (dataset / "manifest.json").unlink()
    (dataset / "manifest.json").mkdir()
    with pytest.raises(ManifestError, match="the manifest is a directory"):
        read_manifest(fs, str(dataset))


def test_verify_catches_a_flipped_byte(dataset: Path) -> None:
    fs = LocalFiles()
    seen: list[int] = []
    m = verify_manifest(fs, str(dataset), seen.append)
    assert sum(seen) == m.total_bytes and shard_problems(fs, m) == []
    victim = dataset / "shard-00001.rec"
    data = bytearray(victim.read_bytes())
    data[HEADER_SIZE + 150] ^= 0x01  # a sample byte: the sample CRCs and the index stay as they were
    victim.write_bytes(bytes(data))
    read_manifest(fs, str(dataset))  # same size: the cheap check cannot tell
    assert [p for p, _ in shard_problems(fs, m)] == [str(victim)]
    with pytest.raises(ManifestError, match="1 of 3 shards fail: .*shard-00001.rec: CRC32C [0-9a-f]{8}, the manifest "
                                            "says [0-9a-f]{8}: the shard is corrupt") as info:
        verify_manifest(fs, str(dataset))
    assert info.value.filename == str(dataset / "manifest.json")


def test_verify_reports_every_bad_shard_and_keys_file(dataset: Path) -> None:
    fs = LocalFiles()
    m = read_manifest(fs, str(dataset))
    (dataset / "shard-00000.rec").write_bytes(b"")
    (dataset / "shard-00002.keys.json").write_text('["only one key"]')
    problems = dict(shard_problems(fs, m))
    assert problems == {
        str(dataset / "shard-00000.rec"): "0 bytes, the manifest says 264",
        str(dataset / "shard-00002.keys.json"): "bad dataset: the keys file must be a list of 2 strings or nulls",
    }
    (dataset / "shard-00002.keys.json").write_text("[")
    assert "not JSON" in dict(shard_problems(fs, m))[str(dataset / "shard-00002.keys.json")]
    (dataset / "shard-00001.rec").unlink()
    assert dict(shard_problems(fs, m))[str(dataset / "shard-00001.rec")] == "No such file or directory"
