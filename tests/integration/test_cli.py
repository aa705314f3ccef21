"""The `emberfs` command line end to end: real subprocesses against a real metaserver."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from emberfs.client import Client

pytestmark = pytest.mark.timeout(120)

CLI_TIMEOUT_S = 30
SCRIPT = Path(sys.executable).with_name("emberfs")


@dataclass
class Result:
    code: int
    out: str
    err: str


def emberfs(address: str | None, *args: str, env: dict[str, str] | None = None) -> Result:
    meta = ["--meta", address] if address else []
    proc = subprocess.run(
        [sys.executable, "-m", "emberfs.client.cli", *meta, *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(address: str, *args: str) -> str:
    r = emberfs(address, *args)
    assert r.code == 0 and r.err == "", (args, r)
    return r.out


def fails(address: str, *args: str, line: str, code: int = 1) -> None:
    r = emberfs(address, *args)
    assert (r.code, r.err.strip()) == (code, line), (args, r)


def test_make_list_and_remove(shared_meta, workdir) -> None:
    a, w = shared_meta.address, workdir
    ok(a, "mkdir", f"{w}/d1", f"{w}/d2")
    ok(a, "mkdir", "-p", f"{w}/deep/er/est")
    ok(a, "mkdir", "-p", f"{w}/deep/er")  # exists: fine with -p
    ok(a, "mkdir", "-m", "700", f"{w}/private")
    ok(a, "touch", f"{w}/f1", f"{w}/deep/f2")
    assert ok(a, "ls", w).splitlines() == ["d1", "d2", "deep", "f1", "private"]
    long = ok(a, "ls", "-l", w).splitlines()
    assert long[0].startswith("drwxr-xr-x ") and long[0].endswith(" d1")
    assert long[3].startswith("-rw-r--r-- ") and long[3].endswith(" f1")
    assert long[4].startswith("drwx------ ")
    fields = long[3].split()
    assert fields[1:5] == ["1", str(os.getuid()), str(os.getgid()), "0"]
    assert ok(a, "ls", f"{w}/f1") == f"{w}/f1\n"  # a file lists as itself
    tree = ok(a, "ls", "-R", f"{w}/deep")
    assert tree == f"{w}/deep:\ner\nf2\n\n{w}/deep/er:\nest\n\n{w}/deep/er/est:\n"
    fails(a, "rmdir", f"{w}/deep", line=f"emberfs: rmdir: {w}/deep: Directory not empty")
    ok(a, "rmdir", f"{w}/d1")
    fails(a, "rm", f"{w}/d2", line=f"emberfs: rm: {w}/d2: Is a directory")
    ok(a, "rm", f"{w}/f1")
    ok(a, "rm", "-r", f"{w}/deep", f"{w}/d2")
    ok(a, "rm", "-f", f"{w}/never-was")
    fails(a, "rm", f"{w}/never-was", line=f"emberfs: rm: {w}/never-was: No such file or directory")
    assert ok(a, "ls", w) == "private\n"


def test_errors_are_one_line_and_other_paths_still_run(shared_meta, workdir) -> None:
    a, w = shared_meta.address, workdir
    fails(a, "ls", "/nope", line="emberfs: ls: /nope: No such file or directory")
    r = emberfs(a, "mkdir", f"{w}/x", f"{w}/missing/y", f"{w}/z")
    assert r.code == 1 and r.err == f"emberfs: mkdir: {w}/missing/y: No such file or directory\n"
    assert ok(a, "ls", w).split() == ["x", "z"]
    fails(a, "mkdir", f"{w}/x", line=f"emberfs: mkdir: {w}/x: File exists")
    fails(a, "mkdir", "relative",
          line="emberfs: mkdir: relative: Invalid argument (path 'relative' is not absolute (must start with '/'))")
    fails(a, "touch", f"{w}/" + "n" * 256,
          line=f"emberfs: touch: {w}/{'n' * 256}: File name too long (name is 256 bytes; the limit is 255)")
    ok(a, "touch", f"{w}/file")
    fails(a, "mkdir", f"{w}/file/sub", line=f"emberfs: mkdir: {w}/file/sub: Not a directory")
    fails(a, "mv", f"{w}/gone", f"{w}/there", line=f"emberfs: mv: {w}/gone -> {w}/there: No such file or directory")
    assert "Traceback" not in emberfs(a, "stat", "/nope").err


def test_stat_mv_ln_chmod_chown_touch(shared_meta, workdir) -> None:
    a, w = shared_meta.address, workdir
    ok(a, "touch", f"{w}/f")
    out = ok(a, "stat", f"{w}/f")
    assert f"  File: {w}/f\n" in out and "Type: regular file" in out and "Access: (0644/-rw-r--r--)" in out
    assert "Layout: chunk_size=" in out
    ok(a, "chmod", "640", f"{w}/f")
    assert "Access: (0640/-rw-r-----)" in ok(a, "stat", f"{w}/f")
    fails(a, "chmod", "755", f"{w}/nope", line=f"emberfs: chmod: {w}/nope: No such file or directory")
    ok(a, "chown", "1234:99", f"{w}/f")
    assert "Uid: 1234  Gid: 99" in ok(a, "stat", f"{w}/f")
    ok(a, "chown", ":7", f"{w}/f")
    assert "Uid: 1234  Gid: 7" in ok(a, "stat", f"{w}/f")
    ok(a, "mkdir", f"{w}/dir")
    ok(a, "mv", f"{w}/f", f"{w}/g")  # a new name
    ok(a, "mv", f"{w}/g", f"{w}/dir")  # into an existing directory
    assert ok(a, "ls", f"{w}/dir") == "g\n"
    ok(a, "ln", f"{w}/dir/g", f"{w}/hard")
    assert "Links: 2" in ok(a, "stat", f"{w}/hard")
    ok(a, "ln", "-s", "dir/g", f"{w}/soft")
    out = ok(a, "stat", f"{w}/soft")
    assert f"  File: {w}/soft -> dir/g" in out and "Type: symbolic link" in out
    ok(a, "ln", "-s", f"{w}/dir", f"{w}/todir")
    long = ok(a, "ls", "-l", w)
    assert any(line.startswith("lrwxrwxrwx") and line.endswith(f" todir -> {w}/dir") for line in long.splitlines())
    assert ok(a, "ls", f"{w}/todir") == "g\n"  # followed without -l, as GNU ls does
    fails(a, "ln", f"{w}/dir", f"{w}/dirlink", line=f"emberfs: ln: {w}/dir -> {w}/dirlink: Operation not permitted")


def test_touch_sets_times_of_existing_entries(shared_meta, workdir, arun) -> None:
    a, w = shared_meta.address, workdir
    ok(a, "mkdir", f"{w}/d")
    ok(a, "touch", f"{w}/f")

    async def age() -> None:
        async with Client(a) as c:
            for p in (f"{w}/d", f"{w}/f"):
                await c.utime(p, ns=(0, 0))

    arun(age())
    assert "Modify: 1970-01-01" in ok(a, "stat", f"{w}/f") or "Modify: 1969-12-31" in ok(a, "stat", f"{w}/f")
    ok(a, "touch", f"{w}/d", f"{w}/f")
    for p in (f"{w}/d", f"{w}/f"):
        assert "Modify: 19" not in ok(a, "stat", p)


def test_statfs_env_and_usage(shared_meta, workdir) -> None:
    a = shared_meta.address
    out = ok(a, "statfs")
    assert out.splitlines()[0].split()[0] == "inodes" and "free bytes" in out
    assert ok(a, "df").split()[:2] == ["Filesystem", "Size"]  # df(1)-style, its own command
    env = dict(os.environ, EMBERFS_META=a)
    r = emberfs(None, "ls", workdir, env=env)
    assert r.code == 0 and r.out == ""
    r = emberfs(a, "chmod", "u+x", workdir)
    assert r.code == 2 and "invalid octal mode" in r.err
    r = emberfs(a, "frobnicate")
    assert r.code == 2


def test_unreachable_metaserver(tmp_path) -> None:
    r = emberfs("127.0.0.1:1", "ls", "/")
    assert r.code == 2
    assert r.err == "emberfs: ls: cannot reach the metaserver at 127.0.0.1:1\n"


def test_console_script(shared_meta) -> None:
    """The installed `emberfs` entry point is the same program."""
    assert SCRIPT.exists(), f"no console script at {SCRIPT}: is emberfs installed in this venv?"
    proc = subprocess.run([str(SCRIPT), "--meta", shared_meta.address, "stat", "/"],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0 and "Type: directory" in proc.stdout
