"""`emberfs pack` and `emberfs shards` on local disk (--local: no cluster), in-process,
and their pure parts: sizes, the file walk, JSON lines. The same commands against a
real cluster are in tests/integration/test_cli_pack.py."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from emberfs.client.cli import main
from emberfs.client.commands.pack import json_lines, parse_size, samples, source_files
from emberfs.client.data import LocalFiles, RecordReader
from emberfs.client.shards import read_keys, read_manifest


@pytest.mark.parametrize(
    "text, size",
    [("4096", 4096), ("64K", 64 << 10), ("64k", 64 << 10), ("256M", 256 << 20), ("256MiB", 256 << 20),
     ("1G", 1 << 30), ("1GB", 1 << 30), ("2T", 2 << 40), (" 8M ", 8 << 20)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "1.5M", "-1", "0", "12X", "ten"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A folder of image-like files in nested directories, a JSON-lines file and a note."""
    root = tmp_path / "src"
    for name, size in [("b/2.jpg", 300), ("a/1.jpg", 100), ("a/10.jpg", 1000), ("c.jpg", 5), ("a/x/3.jpg", 0)]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(os.urandom(size))
    (root / "notes.txt").write_text("hello\n")
    (root / "meta").mkdir()
    (root / "meta" / "rows.jsonl").write_bytes(b'{"id": 1}\n\n{"id": 2, "t": "two"}\r\n[3]')
    (root / "meta" / "more.json").write_bytes(b'"four"\n')
    return root


JPGS = ["a/1.jpg", "a/10.jpg", "a/x/3.jpg", "b/2.jpg", "c.jpg"]


def test_source_files_are_sorted_filtered_and_relative(src: Path) -> None:
    assert [rel for rel, _, _ in source_files(str(src), ["*.jpg"])] == JPGS
    everything = source_files(str(src), ["*"])
    assert [rel for rel, _, _ in everything] == sorted(JPGS + ["meta/more.json", "meta/rows.jsonl", "notes.txt"])
    assert all(size == os.path.getsize(path) for _, path, size in everything)
    (src / "link.jpg").symlink_to(src / "c.jpg")  # a symlink to a file is followed
    (src / "loop").symlink_to(src)  # one to a directory is not entered
    assert [rel for rel, _, _ in source_files(str(src), ["*.jpg"])] == [*JPGS[:-1], "c.jpg", "link.jpg"]
    with pytest.raises(NotADirectoryError):
        source_files(str(src / "c.jpg"), ["*"])


def test_json_lines(src: Path) -> None:
    rows = list(json_lines(str(src / "meta" / "rows.jsonl"), "meta/rows.jsonl"))
    assert [(key, sample, offset) for key, sample, _, offset in rows] == [
        ("meta/rows.jsonl:1", b'{"id": 1}', 0), ("meta/rows.jsonl:3", b'{"id": 2, "t": "two"}', 11),
        ("meta/rows.jsonl:4", b"[3]", 34)]
    assert sum(used for _, _, used, _ in rows) == os.path.getsize(src / "meta" / "rows.jsonl")
    (src / "bad.jsonl").write_bytes(b'{"ok": 1}\n{"cut": \n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not a JSON value"):
        list(json_lines(str(src / "bad.jsonl"), "bad.jsonl"))


@pytest.mark.parametrize("jsonl, patterns", [(False, ["*"]), (True, ["*.jsonl", "*.json"])])
def test_shuffled_samples_are_a_seeded_permutation(src: Path, jsonl: bool, patterns: list[str]) -> None:
    for k in range(30):
        (src / "many" / f"{k:02d}.jpg").parent.mkdir(exist_ok=True)
        (src / "many" / f"{k:02d}.jpg").write_bytes(b"%d" % k)
        (src / "many" / f"{k:02d}.jsonl").write_bytes(b"%d\n[%d]\n" % (k, k))
    files = source_files(str(src), patterns)
    in_order = [(key, sample) for key, sample, _ in samples(files, jsonl, None)]
    shuffled = [(key, sample) for key, sample, _ in samples(files, jsonl, 7)]
    assert sorted(shuffled) == sorted(in_order) and shuffled != in_order
    assert [(key, sample) for key, sample, _ in samples(files, jsonl, 7)] == shuffled  # the seed decides
    assert [(key, sample) for key, sample, _ in samples(files, jsonl, 8)] != shuffled


def test_a_shuffled_pack_checks_every_line_before_writing(src: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (src / "meta" / "z.jsonl").write_bytes(b"{}\n{oops\n")
    assert main(["pack", str(src), str(tmp_path / "ds"), "--local", "--jsonl", "--shuffle", "1"]) == 1
    assert "z.jsonl:2: not a JSON value" in capsys.readouterr().err
    assert not any(p.suffix == ".rec" for p in (tmp_path / "ds").iterdir())


def test_pack_a_folder_of_images(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "ds"
    assert main(["pack", str(src), str(dest), "--local", "--pattern", "*.jpg", "--max-bytes", "1K"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"packed 5 files into 3 shards, 5 samples, {read_manifest(LocalFiles(), str(dest)).total_bytes} "
                   f"bytes ({out[0].split('(')[1]}", f"manifest: {dest}/manifest.json"]
    fs = LocalFiles()
    m = read_manifest(fs, str(dest))
    samples = [s for path in m.paths for s in RecordReader(fs, path)]
    assert samples == [(src / rel).read_bytes() for rel in JPGS]
    assert [k for i in range(len(m.paths)) for k in read_keys(fs, m, i)] == JPGS
    assert all(size <= 1024 for size, count in zip(m.sizes, m.counts, strict=True) if count > 1)

    assert main(["shards", "info", str(dest), "--local"]) == 0
    info = capsys.readouterr().out
    assert "3 shards, 5 samples" in info and "shard-00002.rec" in info
    assert main(["shards", "verify", str(dest / "manifest.json"), "--local"]) == 0
    assert capsys.readouterr().out.startswith("ok: 3 shards, 5 samples")


def test_pack_json_lines_without_keys(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "rows"
    assert main(["pack", str(src), str(dest), "--local", "--jsonl", "--no-keys", "--max-count", "2"]) == 0
    fs = LocalFiles()
    m = read_manifest(fs, str(dest))
    assert m.counts == [2, 2] and m.key_paths == [None, None]
    assert [s for p in m.paths for s in RecordReader(fs, p)] == [b'"four"', b'{"id": 1}', b'{"id": 2, "t": "two"}',
                                                                 b"[3]"]
    assert "packed 2 files into 2 shards, 4 samples" in capsys.readouterr().out


def test_pack_refuses_and_replaces(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "ds"
    assert main(["pack", str(src), str(dest), "--local"]) == 0
    capsys.readouterr()
    assert main(["pack", str(src), str(dest), "--local", "--pattern", "*.txt"]) == 1
    assert capsys.readouterr().err == f"emberfs: pack: {dest}: a dataset is already there (--force replaces it)\n"
    assert read_manifest(LocalFiles(), str(dest)).total_samples == 8
    assert main(["pack", str(src), str(dest), "--local", "--pattern", "*.txt", "--force"]) == 0
    assert read_manifest(LocalFiles(), str(dest)).total_samples == 1


def test_pack_failures_leave_no_manifest(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (src / "meta" / "broken.jsonl").write_bytes(b"{}\nnot json\n")
    dest = tmp_path / "rows"
    assert main(["pack", str(src), str(dest), "--local", "--jsonl"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"emberfs: pack: {src}/meta/broken.jsonl:2: not a JSON value (Expecting value: line 1 column 1 "
                   "(char 0))", f"emberfs: pack: {dest}: left without a manifest (incomplete)"]
    assert not (dest / "manifest.json").exists()

    assert main(["pack", str(src), str(tmp_path / "none"), "--local", "--pattern", "*.png"]) == 1
    assert "no file matches *.png; nothing written" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    assert main(["pack", str(src / "c.jpg"), str(dest), "--local"]) == 1
    assert "Not a directory" in capsys.readouterr().err
    assert main(["pack", str(src), str(dest), "--local", "--max-bytes", "51"]) == 2
    assert "--max-bytes must be at least 52" in capsys.readouterr().err


def test_shards_verify_reports_a_corrupt_shard(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "ds"
    assert main(["pack", str(src), str(dest), "--local", "--max-count", "3"]) == 0
    victim = dest / "shard-00001.rec"
    data = bytearray(victim.read_bytes())
    data[40] ^= 0x80
    victim.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["shards", "verify", str(dest), "--local"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(f"emberfs: shards verify: {victim}: CRC32C ")
    assert err[1] == "emberfs: shards verify: 1 of 3 shards fail"
    assert main(["shards", "info", str(tmp_path / "nothing"), "--local"]) == 1
    assert "no manifest: not a dataset, or its writer never finished" in capsys.readouterr().err
