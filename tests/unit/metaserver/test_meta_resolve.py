"""Path resolution: symlinks (absolute, relative, '.', '..'), depth limit, search permission."""

from __future__ import annotations

from typing import Any

import pytest

from emberfs.common import errors as e
from emberfs.common.paths import MAX_SYMLINK_DEPTH
from emberfs.proto import meta_pb2


@pytest.fixture
def tree(ns: Any) -> Any:
    ns.mkdir("/a/b/c", parents=True)
    ns.touch("/a/b/c/f")
    ns.touch("/top")
    return ns


@pytest.mark.parametrize(
    ("target", "link_at", "path", "expect"),
    [
        ("/a/b", "/abs", "/abs/c/f", "/a/b/c/f"),
        ("b/c", "/a/rel", "/a/rel/f", "/a/b/c/f"),
        ("../b/./c", "/a/b/up", "/a/b/up/f", "/a/b/c/f"),
        ("../../..", "/a/b/c/root", "/a/b/c/root/top", "/top"),
        ("../../../../../..", "/a/b/c/past", "/a/b/c/past/top", "/top"),  # '..' at the root stays
        ("/", "/slash", "/slash/a/b", "/a/b"),
        (".", "/a/dot", "/a/dot/dot/dot/b", "/a/b"),
        ("c/", "/a/b/trail", "/a/b/trail/f", "/a/b/c/f"),
        ("/a//b///c", "/dbl", "/dbl/f", "/a/b/c/f"),
    ],
)
def test_symlink_following(tree: Any, target: str, link_at: str, path: str, expect: str) -> None:
    tree.symlink(target, link_at)
    assert tree.stat(path).inode_id == tree.stat(expect).inode_id


def test_last_component_follow_flag(tree: Any) -> None:
    tree.symlink("/a/b/c/f", "/l")
    assert tree.stat("/l").type == meta_pb2.FILE
    assert tree.stat("/l", follow=False).type == meta_pb2.SYMLINK


def test_chain_of_links_resolves(tree: Any) -> None:
    tree.symlink("/a/b/c/f", "/l0")
    for i in range(1, MAX_SYMLINK_DEPTH):
        tree.symlink(f"/l{i - 1}", f"/l{i}")
    assert tree.stat(f"/l{MAX_SYMLINK_DEPTH - 1}").type == meta_pb2.FILE  # exactly the limit
    tree.symlink(f"/l{MAX_SYMLINK_DEPTH - 1}", "/over")
    with pytest.raises(e.TooManySymlinks):
        tree.stat("/over")


@pytest.mark.parametrize(
    ("links", "path"),
    [
        ([("/loop", "/loop")], "/loop"),
        ([("/x", "/y"), ("/y", "/x")], "/x/anything"),
        ([("/a/loopdir", "loopdir/..")], "/a/loopdir/f"),
    ],
)
def test_loops_are_eloop(ns: Any, links: list[tuple[str, str]], path: str) -> None:
    ns.mkdir("/a")
    for link_path, target in links:
        ns.symlink(target, link_path)
    with pytest.raises(e.TooManySymlinks):
        ns.stat(path)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/nope", e.NotFound),
        ("/nope/x", e.NotFound),
        ("/top/x", e.NotADirectory),
        ("/dangling", e.NotFound),
        ("/dangling/x", e.NotFound),
        ("/tofile/x", e.NotADirectory),
        ("/tofile_dot", e.NotADirectory),
    ],
)
def test_resolution_errors(tree: Any, path: str, error: type) -> None:
    tree.symlink("/gone", "/dangling")
    tree.symlink("/top", "/tofile")
    tree.symlink("/top/.", "/tofile_dot")
    with pytest.raises(error):
        tree.stat(path)


def test_search_permission_on_every_directory(tree: Any) -> None:
    tree.setattr("/a/b", mode=0o700)
    user = tree.user(1000)
    with pytest.raises(e.PermissionDenied):
        user.stat("/a/b/c")
    assert user.stat("/a/b").mode == 0o700  # stat of b itself only needs x on /a
    tree.symlink("/a/b/c", "/via")
    with pytest.raises(e.PermissionDenied):
        user.stat("/via")
    tree.setattr("/a/b", mode=0o701)
    assert user.stat("/via/f").type == meta_pb2.FILE
