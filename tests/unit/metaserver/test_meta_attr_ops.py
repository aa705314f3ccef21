"""List, setattr, truncate, open/close/sync sessions and statfs."""

from __future__ import annotations

from typing import Any

import pytest

from emberfs.common import errors as e
from emberfs.proto import meta_pb2

# -- list ------------------------------------------------------------------------


def test_list_5000_entries_in_pages(ns: Any) -> None:
    ns.mkdir("/big")
    names = sorted(f"n{i:05d}" for i in range(5000))

    def fill(part: list[str]) -> Any:  # 100 per transaction (etcd takes ~1,000 operations in one)
        from emberfs.common.paths import split_path
        from emberfs.metaserver.ops.create import create
        from emberfs.metaserver.ops.perm import ROOT

        return lambda tx: [create(tx, ROOT, split_path(f"/big/{name}"), mode=0o644) for name in part]

    for at in range(0, len(names), 100):
        ns.store.write_sync(fill(names[at:at + 100]))
    seen: list[str] = []
    cursor, pages = "", 0
    while True:
        page = ns.listdir("/big", start_after=cursor, limit=700)
        pages += 1
        seen.extend(entry.name for entry in page.entries)
        if not page.more:
            break
        cursor = page.entries[-1].name
    assert seen == names and pages == 8
    assert len(ns.listdir("/big").entries) == 1000  # limit 0: the default page
    assert len(ns.listdir("/big", limit=100_000).entries) == 5000  # capped at max_list_page (10,000)
    assert not ns.listdir("/big", limit=5000).more
    assert ns.listdir("/big", limit=4999).more


def test_list_order_cursor_and_attrs(ns: Any) -> None:
    ns.mkdir("/d")
    for name in ("b", "a", "é", "Z", "aa"):
        ns.touch(f"/d/{name}")
    ns.mkdir("/d/sub")
    entries = ns.listdir("/d", with_attrs=True).entries
    assert [x.name for x in entries] == sorted(["b", "a", "é", "Z", "aa", "sub"], key=lambda s: s.encode())
    assert all(x.inode.inode_id == x.inode_id for x in entries)
    sub = next(x for x in entries if x.name == "sub")
    assert sub.type == meta_pb2.DIRECTORY
    assert [x.name for x in ns.listdir("/d", start_after="aa").entries] == ["b", "sub", "é"]
    assert [x.name for x in ns.listdir("/d", start_after="ab").entries] == ["b", "sub", "é"]
    assert not ns.listdir("/d").entries[0].HasField("inode")


def test_list_does_not_mix_directories(ns: Any) -> None:
    ns.mkdir("/a")
    ns.mkdir("/b")
    ns.touch("/a/x")
    ns.touch("/b/y")
    assert ns.names("/a") == ["x"] and ns.names("/b") == ["y"] and ns.names("/") == ["a", "b"]


def test_list_errors_and_symlinked_dir(ns: Any) -> None:
    ns.touch("/f")
    ns.mkdir("/d")
    ns.touch("/d/x")
    ns.symlink("/d", "/l")
    assert ns.names("/l") == ["x"]
    with pytest.raises(e.NotADirectory):
        ns.listdir("/f")
    with pytest.raises(e.NotFound):
        ns.listdir("/nope")


# -- setattr ---------------------------------------------------------------------


def test_setattr_mode_owner_times(ns: Any) -> None:
    f = ns.touch("/f")
    out = ns.setattr("/f", mode=0o4755, uid=5, gid=6, atime_ns=11, mtime_ns=22)
    assert (out.mode, out.uid, out.gid, out.atime_ns, out.mtime_ns) == (0o4755, 5, 6, 11, 22)
    assert out.ctime_ns >= f.ctime_ns
    now = ns.setattr("/f", times_now=True)
    assert now.atime_ns == now.mtime_ns and now.mtime_ns > 22
    with pytest.raises(e.InvalidArgument):
        ns.setattr("/f", mode=0o10000)
    with pytest.raises(e.InvalidArgument):
        ns.setattr("/f", times_now=True, atime_ns=1)


def test_setattr_follow_flag(ns: Any) -> None:
    ns.touch("/f")
    ns.symlink("/f", "/l")
    ns.setattr("/l", mode=0o600)
    assert ns.stat("/f").mode == 0o600
    ns.setattr("/l", follow_symlinks=False, uid=9)
    assert ns.stat("/l", follow=False).uid == 9 and ns.stat("/f").uid == 0


# -- truncate and sessions --------------------------------------------------------


def test_truncate(ns: Any) -> None:
    ns.touch("/f")
    grown = ns.truncate("/f", 1000)
    assert grown.length == 1000 and grown.truncate_version == 1
    assert ns.statfs().used_bytes == 1000
    shrunk = ns.truncate("/f", 10)
    assert shrunk.length == 10 and shrunk.truncate_version == 2 and shrunk.mtime_ns >= grown.mtime_ns
    assert ns.statfs().used_bytes == 10
    ns.mkdir("/d")
    ns.symlink("/f", "/l")
    assert ns.truncate("/l", 3).length == 3
    with pytest.raises(e.IsADirectory):
        ns.truncate("/d", 0)
    with pytest.raises(e.InvalidArgument):
        ns.truncate("/f", 2**63)


def test_write_session_lifecycle(ns: Any) -> None:
    f = ns.touch("/f")
    opened = ns.open("/f", write=True)
    assert opened.session_id > 0 and ns.sessions_of(f.inode_id) == [opened.session_id]
    assert ns.sync(opened.session_id, f.inode_id, 4096).length == 4096
    assert ns.sync(opened.session_id, f.inode_id, 100).length == 4096  # reports never shrink
    closed = ns.close(opened.session_id, f.inode_id, 8192)
    assert closed.length == 8192 and closed.mtime_ns >= f.mtime_ns
    assert ns.sessions_of(f.inode_id) == [] and ns.statfs().used_bytes == 8192
    # A retried Close (session already gone) applies its length again, harmlessly.
    assert ns.close(opened.session_id, f.inode_id, 8192).length == 8192
    quiet = ns.open("/f", write=True)
    before = ns.stat("/f")
    assert ns.close(quiet.session_id, f.inode_id, 1 << 30, wrote=False).mtime_ns == before.mtime_ns
    assert ns.stat("/f").length == 8192


def test_open_modes(ns: Any) -> None:
    f = ns.touch("/f")
    ns.truncate("/f", 50)
    read = ns.open("/f")
    assert read.session_id == 0 and read.inode.length == 50
    cut = ns.open("/f", write=True, truncate=True)
    assert cut.inode.length == 0 and cut.inode.truncate_version == 2
    ns.mkdir("/d")
    with pytest.raises(e.IsADirectory):
        ns.open("/d")
    with pytest.raises(e.NotFound):
        ns.open("/nope", write=True)
    with pytest.raises(e.NotFound):
        ns.close(1, 999_999, 10)
    with pytest.raises(e.IsADirectory):
        ns.close(1, ns.stat("/d").inode_id, 10)
    assert f.inode_id


def test_statfs_counts_everything(ns: Any) -> None:
    ns.mkdir("/d")
    ns.touch("/d/f")
    ns.truncate("/d/f", 123)
    ns.symlink("/d", "/l")
    fs = ns.statfs()
    assert (fs.inodes, fs.files, fs.directories, fs.symlinks, fs.used_bytes) == (4, 1, 2, 1, 123)
    assert (fs.capacity_bytes, fs.free_bytes) == (0, 0)
