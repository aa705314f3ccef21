"""Create, mkdir, remove, rename, link and symlink against a real store (as root)."""

from __future__ import annotations

from typing import Any

import pytest

from emberfs.common import errors as e
from emberfs.metaserver.store import MetaStore
from emberfs.proto import meta_pb2

FILE, DIRECTORY, SYMLINK = meta_pb2.FILE, meta_pb2.DIRECTORY, meta_pb2.SYMLINK
NON_DIRECTORY, EMPTY_DIRECTORY, RECURSIVE = meta_pb2.NON_DIRECTORY, meta_pb2.EMPTY_DIRECTORY, meta_pb2.RECURSIVE
Ns = Any  # the conftest's facade, reached through fixtures

# -- create ----------------------------------------------------------------------


def test_create_new_file_inherits_layout_and_bumps_parent(ns: Ns) -> None:
    before = ns.stat("/")
    reply = ns.create("/f", 0o640)
    assert reply.created and reply.session_id == 0
    inode = reply.inode
    assert (inode.type, inode.mode, inode.nlink, inode.length) == (FILE, 0o640, 1, 0)
    assert (inode.layout.chunk_size, inode.layout.stripe, list(inode.layout.chain_ids)) == (1 << 20, 2, [])
    root = ns.stat("/")
    assert root.mtime_ns >= before.mtime_ns and root.nlink == 2
    assert ns.statfs().files == 1


def test_create_layout_from_request_and_directory(ns: Ns) -> None:
    ns.mkdir("/d", chunk_size=1 << 16, stripe=3)
    assert ns.create("/d/a", 0o644).inode.layout.chunk_size == 1 << 16
    assert ns.create("/d/b", 0o644, chunk_size=1 << 22, stripe=8).inode.layout.stripe == 8
    with pytest.raises(e.InvalidArgument):
        ns.create("/d/c", 0o644, chunk_size=12345)
    with pytest.raises(e.InvalidArgument):
        ns.create("/d/c", 0o644, stripe=257)


def test_create_takes_chains_from_the_allocator(config: Any, make_ns: Any, fixed_chains: Any) -> None:
    with MetaStore(config, allocator=fixed_chains) as store:
        inode = make_ns(store).create("/f").inode
        assert list(inode.layout.chain_ids) == [1, 2]


@pytest.mark.parametrize(
    ("setup", "path", "kwargs", "error"),
    [
        ([("file", "/f")], "/f", {"exclusive": True}, e.AlreadyExists),
        ([("dir", "/d")], "/d", {}, e.IsADirectory),
        ([("dir", "/d")], "/d", {"exclusive": True}, e.AlreadyExists),
        ([], "/", {}, e.IsADirectory),
        ([], "/", {"exclusive": True}, e.AlreadyExists),
        ([], "/missing/f", {}, e.NotFound),
        ([("file", "/f")], "/f/g", {}, e.NotADirectory),
        ([("link", "/l", "/f")], "/l", {"exclusive": True}, e.AlreadyExists),
        ([("link", "/l", "/nodir/f")], "/l", {}, e.NotFound),
    ],
)
def test_create_errors(ns: Ns, setup: list, path: str, kwargs: dict, error: type) -> None:
    for kind, where, *rest in setup:
        match kind:
            case "file":
                ns.touch(where)
            case "dir":
                ns.mkdir(where)
            case "link":
                ns.symlink(rest[0], where)
            case _:
                raise AssertionError(f"unknown setup kind {kind!r}")
    with pytest.raises(error):
        ns.create(path, **kwargs)


def test_create_existing_opens_truncates_and_follows_symlinks(ns: Ns) -> None:
    first = ns.create("/f").inode
    ns.truncate("/f", 100)
    again = ns.create("/f")
    assert not again.created and again.inode.inode_id == first.inode_id and again.inode.length == 100
    truncated = ns.create("/f", truncate=True).inode
    assert truncated.length == 0 and truncated.truncate_version == 2
    ns.symlink("/f", "/l")
    assert ns.create("/l").inode.inode_id == first.inode_id
    ns.symlink("target", "/dangling")
    made = ns.create("/dangling").inode  # O_CREAT through a dangling link makes its target
    assert ns.stat("/target").inode_id == made.inode_id


def test_create_open_for_write_makes_a_session(ns: Ns) -> None:
    reply = ns.create("/f", open_for_write=True)
    assert reply.session_id > 0
    assert ns.sessions_of(reply.inode.inode_id) == [reply.session_id]


# -- mkdir -----------------------------------------------------------------------


def test_mkdir_counts_and_nlink(ns: Ns) -> None:
    d = ns.mkdir("/a", 0o700)
    assert (d.type, d.mode, d.nlink, d.parent_id) == (DIRECTORY, 0o700, 2, 1)
    ns.mkdir("/a/b")
    assert ns.stat("/a").nlink == 3 and ns.stat("/").nlink == 3
    assert ns.statfs().directories == 3


def test_mkdir_parents_and_exist_ok(ns: Ns) -> None:
    deep = ns.mkdir("/x/y/z", 0o750, parents=True, stripe=5)
    assert deep.layout.stripe == 5 and deep.mode == 0o750
    assert ns.stat("/x/y").layout.stripe == 2  # intermediates inherit, not the request's layout
    assert ns.stat("/x").mode == 0o750
    assert ns.mkdir("/x/y/z", parents=True, exist_ok=True).inode_id == deep.inode_id
    assert ns.mkdir("/x", exist_ok=True).inode_id == ns.stat("/x").inode_id
    assert ns.mkdir("/", exist_ok=True).inode_id == 1
    ns.symlink("/x", "/lx")
    assert ns.mkdir("/lx/y/new", parents=True).parent_id == ns.stat("/x/y").inode_id
    assert ns.mkdir("/lx", exist_ok=True).inode_id == ns.stat("/x").inode_id
    assert ns.mkdir("/ub", 0o000, parents=True).mode == 0o000


@pytest.mark.parametrize(
    ("path", "kwargs", "error"),
    [
        ("/d", {}, e.AlreadyExists),
        ("/f", {}, e.AlreadyExists),
        ("/f", {"exist_ok": True}, e.AlreadyExists),
        ("/f", {"exist_ok": True, "parents": True}, e.AlreadyExists),
        ("/", {}, e.AlreadyExists),
        ("/missing/x", {}, e.NotFound),
        ("/f/x", {}, e.NotADirectory),
        ("/f/x/y", {"parents": True}, e.NotADirectory),
        ("/dangling/x", {"parents": True}, e.NotFound),
        ("/dangling", {"exist_ok": True}, e.AlreadyExists),
        ("/d", {"chunk_size": 3}, e.AlreadyExists),
        ("/new", {"chunk_size": 3}, e.InvalidArgument),
    ],
)
def test_mkdir_errors(ns: Ns, path: str, kwargs: dict, error: type) -> None:
    ns.mkdir("/d")
    ns.touch("/f")
    ns.symlink("/nowhere", "/dangling")
    with pytest.raises(error):
        ns.mkdir(path, **kwargs)


# -- remove ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "error"),
    [
        ("/d", NON_DIRECTORY, e.IsADirectory),
        ("/f", EMPTY_DIRECTORY, e.NotADirectory),
        ("/full", EMPTY_DIRECTORY, e.DirectoryNotEmpty),
        ("/", RECURSIVE, e.Busy),
        ("/", EMPTY_DIRECTORY, e.Busy),
        ("/nope", NON_DIRECTORY, e.NotFound),
        ("/f/x", NON_DIRECTORY, e.NotADirectory),
        ("/f", 0, e.InvalidArgument),
    ],
)
def test_remove_errors(ns: Ns, path: str, kind: int, error: type) -> None:
    ns.mkdir("/d")
    ns.mkdir("/full")
    ns.touch("/full/x")
    ns.touch("/f")
    with pytest.raises(error):
        ns.remove(path, kind)


def test_remove_kinds_and_counters(ns: Ns) -> None:
    ns.mkdir("/d")
    ns.touch("/f")
    ns.truncate("/f", 10)
    ns.symlink("/d", "/l")
    assert ns.remove("/l") == 1 and ns.stat("/d").type == DIRECTORY  # the link, not its target
    assert ns.remove("/f", RECURSIVE) == 1
    assert ns.remove("/d", EMPTY_DIRECTORY) == 1
    fs = ns.statfs()
    assert (fs.files, fs.directories, fs.symlinks, fs.used_bytes) == (0, 1, 0, 0)
    assert ns.stat("/").nlink == 2 and ns.names("/") == []


def test_remove_recursive_tree(ns: Ns) -> None:
    ns.mkdir("/t/a/b/c", parents=True)
    for i in range(5):
        ns.touch(f"/t/a/f{i}")
        ns.touch(f"/t/a/b/c/g{i}")
    ns.symlink("/t", "/t/a/loop")
    ns.touch("/keep")
    ns.link("/t/a/f0", "/keep2")
    assert ns.remove("/t", RECURSIVE) == 1 + 3 + 5 + 5 + 1  # t, a/b/c, f*, g*, loop
    assert ns.names("/") == ["keep", "keep2"]
    assert ns.stat("/keep2").nlink == 1
    fs = ns.statfs()
    assert (fs.files, fs.directories, fs.symlinks) == (2, 1, 0)


def test_remove_deep_tree_needs_no_recursion(ns: Ns) -> None:
    path = "/" + "/".join(["d"] * 300)
    ns.mkdir(path, parents=True)
    assert ns.remove("/d", RECURSIVE) == 300


def test_last_link_goes_to_gc_only_with_chains(config: Any, make_ns: Any, fixed_chains: Any) -> None:
    with MetaStore(config, allocator=fixed_chains) as store:
        chained = make_ns(store)
        f = chained.create("/f", open_for_write=True).inode
        chained.truncate("/f", 5)
        chained.link("/f", "/g")
        chained.remove("/f")
        assert chained.gc() == [] and chained.stat("/g").nlink == 1
        chained.remove("/g")
        [record] = chained.gc()
        assert record.inode_id == f.inode_id and record.length == 5 and list(record.layout.chain_ids) == [1, 2]
        assert chained.sessions_of(f.inode_id) == []
        assert chained.statfs().used_bytes == 0
        assert store.write_sync(lambda tx: tx.delete_gc(f.inode_id))  # what the collector does
        assert chained.gc() == []


def test_file_without_chains_is_deleted_outright(ns: Ns) -> None:
    ns.touch("/f")
    ns.remove("/f")
    assert ns.gc() == []


# -- rename ----------------------------------------------------------------------


def test_rename_file_and_dir_bookkeeping(ns: Ns) -> None:
    ns.mkdir("/a/sub", parents=True)
    ns.mkdir("/b")
    ns.touch("/a/f")
    moved = ns.rename("/a/sub", "/b/sub2")
    assert moved.parent_id == ns.stat("/b").inode_id
    assert ns.stat("/a").nlink == 2 and ns.stat("/b").nlink == 3
    ns.rename("/a/f", "/a/g")
    assert ns.names("/a") == ["g"]
    assert ns.stat("/b/sub2").inode_id == moved.inode_id


def test_rename_replaces_by_posix_rules(ns: Ns) -> None:
    ns.mkdir("/d1/inner", parents=True)
    ns.mkdir("/d2")
    ns.touch("/f1")
    ns.touch("/f2")
    ns.truncate("/f2", 7)
    ns.rename("/f1", "/f2")  # file over file
    assert ns.names("/") == ["d1", "d2", "f2"] and ns.stat("/f2").length == 0
    assert ns.statfs().used_bytes == 0 and ns.statfs().files == 1
    ns.rename("/d1", "/d2")  # dir over empty dir
    assert ns.names("/d2") == ["inner"] and ns.stat("/").nlink == 3
    assert ns.statfs().directories == 3


def test_rename_replaced_hard_link_keeps_other_names(ns: Ns) -> None:
    ns.touch("/a")
    ns.touch("/b")
    ns.link("/b", "/b2")
    ns.rename("/a", "/b")
    assert ns.stat("/b2").nlink == 1


@pytest.mark.parametrize(
    ("src", "dst", "error"),
    [
        ("/d", "/full", e.DirectoryNotEmpty),
        ("/d", "/f", e.NotADirectory),
        ("/f", "/d", e.IsADirectory),
        ("/d", "/d/x", e.InvalidArgument),
        ("/d", "/d/sub/x", e.InvalidArgument),
        ("/", "/x", e.Busy),
        ("/d", "/", e.Busy),
        ("/missing", "/x", e.NotFound),
        ("/f", "/missing/x", e.NotFound),
        ("/f", "/f/x", e.NotADirectory),
        ("/d/sub", "/d", e.DirectoryNotEmpty),
    ],
)
def test_rename_errors(ns: Ns, src: str, dst: str, error: type) -> None:
    ns.mkdir("/d/sub", parents=True)
    ns.mkdir("/full")
    ns.touch("/full/x")
    ns.touch("/f")
    with pytest.raises(error):
        ns.rename(src, dst)


def test_rename_same_inode_is_a_no_op(ns: Ns) -> None:
    ns.touch("/f")
    ns.link("/f", "/g")
    ns.rename("/f", "/g")
    assert ns.names("/") == ["f", "g"] and ns.stat("/f").nlink == 2
    ns.rename("/f", "/f")
    assert ns.names("/") == ["f", "g"]


def test_rename_through_symlinked_parent_cannot_escape_subtree_check(ns: Ns) -> None:
    ns.mkdir("/d/sub", parents=True)
    ns.symlink("/d/sub", "/s")
    with pytest.raises(e.InvalidArgument):
        ns.rename("/d", "/s/x")


# -- link and symlink -------------------------------------------------------------


def test_link(ns: Ns) -> None:
    f = ns.touch("/f")
    ns.mkdir("/d")
    assert ns.link("/f", "/d/g").nlink == 2
    assert ns.stat("/d/g").inode_id == f.inode_id
    ns.remove("/f")
    assert ns.stat("/d/g").nlink == 1 and ns.statfs().files == 1
    ns.symlink("/d/g", "/l")
    assert ns.link("/l", "/l2").type == SYMLINK  # link(2) does not follow src
    with pytest.raises(e.NotPermitted):
        ns.link("/d", "/d2")
    with pytest.raises(e.AlreadyExists):
        ns.link("/l", "/d/g")
    with pytest.raises(e.AlreadyExists):
        ns.link("/l", "/")
    with pytest.raises(e.NotFound):
        ns.link("/nope", "/x")


def test_symlink_and_readlink(ns: Ns) -> None:
    link = ns.symlink("some/../target", "/l")
    assert (link.type, link.length, link.mode) == (SYMLINK, len("some/../target"), 0o777)
    assert ns.readlink("/l") == "some/../target"
    assert ns.statfs().symlinks == 1
    ns.touch("/f")
    with pytest.raises(e.InvalidArgument):
        ns.readlink("/f")
    with pytest.raises(e.AlreadyExists):
        ns.symlink("x", "/f")
    with pytest.raises(e.AlreadyExists):
        ns.symlink("x", "/")
    for bad in ("", "a\x00b"):
        with pytest.raises(e.InvalidArgument):
            ns.symlink(bad, "/bad")
    with pytest.raises(e.NameTooLong):
        ns.symlink("x" * 4097, "/bad")
    assert ns.symlink("x" * 4096, "/long").length == 4096
