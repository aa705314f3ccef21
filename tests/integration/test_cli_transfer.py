"""`emberfs put`, `get`, `cat` and `df` on a real 3-node cluster (64 KiB chunks).

Most tests run the CLI as a real subprocess; a few call `main([...])` in-process to
shrink the transfer piece size or capture stdout bytes directly.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emberfs.client import Client
from emberfs.client.cli import main
from emberfs.client.commands import transfer

pytestmark = pytest.mark.timeout(120)

CS = 64 * 1024
CLI_TIMEOUT_S = 60
SIZES = [0, 1, CS - 1, CS, CS + 1, 5 * CS + 17]


@dataclass
class Result:
    code: int
    out: bytes
    err: str


def emberfs(meta: str, *args: str, stdin: bytes | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "emberfs.client.cli", "--meta", meta, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode())


def ok(meta: str, *args: str, stdin: bytes | None = None) -> bytes:
    r = emberfs(meta, *args, stdin=stdin)
    assert r.code == 0 and r.err == "", (args, r)
    return r.out


def payload(size: int, seed: int = 0) -> bytes:
    """Bytes that differ per size and seed, so a misplaced chunk cannot pass."""
    block = uuid.UUID(int=size * 7919 + seed).bytes
    return (block * (size // 16 + 1))[:size]


@pytest.fixture
def remote(cluster3: Any, arun: Any) -> str:
    """A fresh directory on the cluster for one test."""
    path = f"/cli-{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        async with Client(cluster3.meta_address, uid=0, gid=0) as fs:
            await fs.mkdir(path)

    arun(make())
    return path


def remote_stat(meta: str, arun: Any, path: str) -> Any:
    async def get() -> Any:
        async with Client(meta) as fs:
            return await fs.lstat(path)

    return arun(get())


def tree(root: Path) -> dict[str, Any]:
    """Every entry under root: file bytes, symlink targets, directories, by relative path."""
    found: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                found[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                found[rel] = ("dir", stat.S_IMODE(p.stat().st_mode))
            else:
                found[rel] = p.read_bytes()
    return found


def test_put_get_round_trip_every_size(cluster3: Any, remote: str, tmp_path: Path, arun: Any) -> None:
    meta = cluster3.meta_address
    src = tmp_path / "src"
    src.mkdir()
    names = []
    for size in SIZES:
        (src / f"f{size}").write_bytes(payload(size))
        names.append(str(src / f"f{size}"))
    # One file to a new name, then all of them into an existing directory.
    ok(meta, "put", names[-1], f"{remote}/renamed")
    ok(meta, "put", "--jobs", "3", *names, remote)
    out = tmp_path / "out"
    out.mkdir()
    ok(meta, "get", *(f"{remote}/f{size}" for size in SIZES), f"{remote}/renamed", str(out))
    for size in SIZES:
        assert (out / f"f{size}").read_bytes() == payload(size), size
        assert remote_stat(meta, arun, f"{remote}/f{size}").st_size == size
    assert (out / "renamed").read_bytes() == payload(SIZES[-1])
    # get to a new local name; put over an existing remote file replaces it.
    ok(meta, "get", f"{remote}/f1", str(tmp_path / "one"))
    assert (tmp_path / "one").read_bytes() == payload(1)
    ok(meta, "put", names[1], f"{remote}/renamed")
    assert ok(meta, "cat", f"{remote}/renamed") == payload(1)


def test_put_keeps_mode_bits_get_applies_umask(cluster3: Any, remote: str, tmp_path: Path, arun: Any) -> None:
    meta = cluster3.meta_address
    f = tmp_path / "script"
    f.write_bytes(b"#!/bin/sh\n")
    f.chmod(0o750)
    ok(meta, "put", str(f), remote)
    assert stat.S_IMODE(remote_stat(meta, arun, f"{remote}/script").st_mode) == 0o750
    f.chmod(0o604)
    ok(meta, "put", str(f), f"{remote}/script")  # replacing a file sets its mode too
    assert stat.S_IMODE(remote_stat(meta, arun, f"{remote}/script").st_mode) == 0o604
    umask = os.umask(0)
    os.umask(umask)
    ok(meta, "get", f"{remote}/script", str(tmp_path / "back"))
    assert stat.S_IMODE((tmp_path / "back").stat().st_mode) == 0o604 & ~umask


def _local_tree(root: Path) -> None:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "top.bin").write_bytes(payload(3 * CS + 5, 1))
    (root / "a" / "zero").write_bytes(b"")
    (root / "a" / "one").write_bytes(b"\x00")
    (root / "a" / "b" / "chunk").write_bytes(payload(CS, 2))
    (root / "a" / "b" / "c" / "deep.bin").write_bytes(payload(2 * CS + 1, 3))
    (root / "a" / "link").symlink_to("b/chunk")
    (root / "a" / "b").chmod(0o750)


def test_recursive_tree_round_trip(cluster3: Any, remote: str, tmp_path: Path, arun: Any) -> None:
    meta = cluster3.meta_address
    src = tmp_path / "tree"
    _local_tree(src)
    # DEST missing: the tree becomes DEST; DEST a directory: the tree goes into it.
    ok(meta, "put", "-r", str(src), f"{remote}/copy")
    ok(meta, "put", "--recursive", str(src), remote)

    async def listing() -> tuple[list[str], list[str], str, int]:
        async with Client(meta) as fs:
            return (
                await fs.listdir(f"{remote}/copy"),
                await fs.listdir(f"{remote}/tree/a"),
                await fs.readlink(f"{remote}/tree/a/link"),
                stat.S_IMODE((await fs.stat(f"{remote}/tree/a/b")).st_mode),
            )

    top, a, link, b_mode = arun(listing())
    assert top == ["a", "empty", "top.bin"]
    assert a == ["b", "link", "one", "zero"]
    assert (link, b_mode) == ("b/chunk", 0o750)
    # And back: byte-exact, symlinks as symlinks, empty directories kept.
    ok(meta, "get", "-r", f"{remote}/copy", str(tmp_path / "back"))
    assert tree(tmp_path / "back") == tree(src)
    (tmp_path / "into").mkdir()
    ok(meta, "get", "-r", f"{remote}/tree", f"{remote}/copy", str(tmp_path / "into"))
    assert tree(tmp_path / "into" / "tree") == tree(src) == tree(tmp_path / "into" / "copy")
    # Again onto what is there: files are replaced, directories and links reused.
    ok(meta, "put", "-r", str(src), remote)
    ok(meta, "get", "-r", f"{remote}/tree", str(tmp_path / "into"))
    assert tree(tmp_path / "into" / "tree") == tree(src)


def test_directory_without_r_is_refused(cluster3: Any, remote: str, tmp_path: Path) -> None:
    meta = cluster3.meta_address
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_bytes(b"f")
    r = emberfs(meta, "put", str(tmp_path / "d"), str(tmp_path / "f"), remote)
    assert r.code == 1
    assert r.err == f"emberfs: put: -r not specified; omitting directory '{tmp_path / 'd'}'\n"
    assert ok(meta, "cat", f"{remote}/f") == b"f"  # the other source was still copied
    ok(meta, "put", "-r", str(tmp_path / "d"), f"{remote}/d")
    r = emberfs(meta, "get", f"{remote}/d", str(tmp_path / "back"))
    assert (r.code, r.err) == (1, f"emberfs: get: -r not specified; omitting directory '{remote}/d'\n")
    assert not (tmp_path / "back").exists()


def test_missing_paths_fail_one_line_each(cluster3: Any, remote: str, tmp_path: Path) -> None:
    meta = cluster3.meta_address
    (tmp_path / "here").write_bytes(b"here")
    r = emberfs(meta, "put", str(tmp_path / "gone"), str(tmp_path / "here"), remote)
    assert r.code == 1
    assert r.err == f"emberfs: put: {tmp_path / 'gone'}: No such file or directory\n"
    assert ok(meta, "cat", f"{remote}/here") == b"here"
    r = emberfs(meta, "get", f"{remote}/gone", str(tmp_path))
    assert (r.code, r.err) == (1, f"emberfs: get: {remote}/gone: No such file or directory\n")
    r = emberfs(meta, "cat", f"{remote}/gone", f"{remote}/here")
    assert (r.code, r.out, r.err) == (1, b"here", f"emberfs: cat: {remote}/gone: No such file or directory\n")
    r = emberfs(meta, "put", str(tmp_path / "here"), f"{remote}/no/such/dir/x")
    assert (r.code, r.err) == (1, f"emberfs: put: {remote}/no/such/dir/x: No such file or directory\n")
    r = emberfs(meta, "put", str(tmp_path / "here"), str(tmp_path / "here"), f"{remote}/new")
    assert (r.code, r.err) == (1, f"emberfs: put: target '{remote}/new' is not a directory\n")
    r = emberfs(meta, "cat", remote)
    assert (r.code, r.err) == (1, f"emberfs: cat: {remote}: Is a directory\n")


def test_stdin_stdout_and_cat(cluster3: Any, remote: str) -> None:
    meta = cluster3.meta_address
    data = payload(4 * CS + 3, 9)
    ok(meta, "put", "-", f"{remote}/from-stdin", stdin=data)
    assert ok(meta, "get", f"{remote}/from-stdin", "-") == data
    ok(meta, "put", "-", f"{remote}/small", stdin=b"tail\n")
    assert ok(meta, "cat", f"{remote}/from-stdin", f"{remote}/small") == data + b"tail\n"
    assert ok(meta, "get", f"{remote}/small", f"{remote}/small", "-") == b"tail\ntail\n"
    ok(meta, "put", "-", f"{remote}/empty", stdin=b"")
    assert ok(meta, "cat", f"{remote}/empty") == b""
    r = emberfs(meta, "put", "-", "/etc/passwd", remote)
    assert (r.code, r.err) == (2, "emberfs: put: '-' (stdin) must be the only source\n")


def test_quiet_and_forced_progress(cluster3: Any, remote: str, tmp_path: Path) -> None:
    meta = cluster3.meta_address
    f = tmp_path / "big"
    f.write_bytes(payload(8 * CS))
    r = emberfs(meta, "put", "--progress", str(f), remote)
    assert r.code == 0
    last = r.err.rsplit("\r", 1)[-1]
    assert last.startswith("[####################] 100%  512.0 KiB / 512.0 KiB") and last.endswith("\n"), r.err
    r = emberfs(meta, "get", "--progress", "--quiet", f"{remote}/big", str(tmp_path / "back"))
    assert (r.code, r.err) == (0, "")
    r = emberfs(meta, "put", "-q", "--progress", "-r", str(tmp_path), f"{remote}/all")
    assert (r.code, r.err) == (0, "")
    # Not a terminal and not forced: nothing on stderr either.
    assert emberfs(meta, "get", f"{remote}/big", str(tmp_path / "again")).err == ""


def test_in_process_small_pieces(cluster3: Any, remote: str, tmp_path: Path, monkeypatch: Any,
                                 capsysbinary: Any) -> None:
    """Pieces smaller than a chunk and not aligned to it still move every byte once."""
    monkeypatch.setattr(transfer, "PIECE", 10_000)
    meta = cluster3.meta_address
    data = payload(3 * CS + 123, 4)
    (tmp_path / "f").write_bytes(data)
    assert main(["--meta", meta, "put", "-q", str(tmp_path / "f"), f"{remote}/f"]) == 0
    assert main(["--meta", meta, "get", f"{remote}/f", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g").read_bytes() == data
    capsysbinary.readouterr()
    assert main(["--meta", meta, "cat", f"{remote}/f"]) == 0
    assert capsysbinary.readouterr().out == data


def test_in_process_errors_and_jobs(cluster3: Any, remote: str, tmp_path: Path, capsys: Any) -> None:
    meta = cluster3.meta_address
    files = []
    for i in range(12):
        files.append(tmp_path / f"n{i:02d}")
        files[-1].write_bytes(payload(i * 5000, i))
    (tmp_path / "fifo").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "fifo")
    code = main(["--meta", meta, "put", "-j", "5", *map(str, files), str(tmp_path / "fifo"), remote])
    assert code == 1
    assert capsys.readouterr().err == f"emberfs: put: {tmp_path / 'fifo'}: not a regular file or directory; skipped\n"
    assert main(["--meta", meta, "get", "-j", "5", *(f"{remote}/{f.name}" for f in files), str(tmp_path / "sub")]) == 1
    assert capsys.readouterr().err == f"emberfs: get: target '{tmp_path / 'sub'}' is not a directory\n"
    (tmp_path / "sub").mkdir()
    assert main(["--meta", meta, "get", "-j", "5", *(f"{remote}/{f.name}" for f in files), str(tmp_path / "sub")]) == 0
    for f in files:
        assert (tmp_path / "sub" / f.name).read_bytes() == f.read_bytes()


def test_df(cluster3: Any, remote: str, tmp_path: Path) -> None:
    meta = cluster3.meta_address
    (tmp_path / "f").write_bytes(payload(2 * CS))
    ok(meta, "put", str(tmp_path / "f"), remote)
    doc = json.loads(ok(meta, "df", "--json"))
    assert doc["meta"] == meta
    assert doc["files"] >= 1 and doc["directories"] >= 2  # / and this test's directory
    assert doc["inodes"] == doc["files"] + doc["directories"] + doc["symlinks"]
    assert doc["used_bytes"] >= 2 * CS
    assert doc["capacity_source"] in ("metaserver", "targets")  # the targets report their disks
    assert 0 < doc["free_bytes"] <= doc["capacity_bytes"]
    assert doc["used_bytes"] <= doc["capacity_bytes"]
    header, row = ok(meta, "df").decode().splitlines()
    assert header.split()[:5] == ["Filesystem", "Size", "Used", "Avail", "Use%"]
    cells = row.split()
    assert cells[0] == meta and int(cells[2]) == doc["used_bytes"] and cells[4].endswith("%")
    human = ok(meta, "df", "-h").decode().splitlines()[1]
    assert "iB" in human or " B " in human
