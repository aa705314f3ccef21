"""POSIX permission checks for non-root callers (root bypasses mode bits)."""

from __future__ import annotations

from typing import Any

import pytest

from emberfs.common import errors as e
from emberfs.metaserver.ops import perm
from emberfs.proto import meta_pb2

ALICE, BOB, STAFF = 1000, 1001, 50


@pytest.fixture
def home(ns: Any) -> Any:
    """/home owned by alice (0o755), with a file /home/f (0o644)."""
    ns.mkdir("/home", 0o755)
    ns.setattr("/home", uid=ALICE, gid=ALICE)
    ns.user(ALICE).touch("/home/f")
    return ns


def _inode(mode: int, uid: int = ALICE, gid: int = STAFF) -> meta_pb2.Inode:
    return meta_pb2.Inode(mode=mode, uid=uid, gid=gid)


@pytest.mark.parametrize(
    ("caller", "mode", "want", "ok"),
    [
        (perm.Caller(ALICE, ALICE), 0o400, perm.R, True),
        (perm.Caller(ALICE, ALICE), 0o077, perm.R, False),  # owner bits rule even if others allow
        (perm.Caller(BOB, STAFF), 0o040, perm.R, True),
        (perm.Caller(BOB, BOB, frozenset({STAFF})), 0o060, perm.R | perm.W, True),
        (perm.Caller(BOB, BOB), 0o060, perm.R, False),
        (perm.Caller(BOB, BOB), 0o001, perm.X, True),
        (perm.Caller(BOB, BOB), 0o005, perm.R | perm.W, False),
        (perm.ROOT, 0o000, perm.R | perm.W | perm.X, True),
    ],
)
def test_may_table(caller: perm.Caller, mode: int, want: int, ok: bool) -> None:
    assert perm.may(caller, _inode(mode), want) is ok


def test_creating_needs_w_and_x_on_the_parent(home: Any) -> None:
    bob = home.user(BOB)
    for action in (
        lambda: bob.touch("/home/b"),
        lambda: bob.mkdir("/home/b"),
        lambda: bob.symlink("x", "/home/b"),
        lambda: bob.link("/home/f", "/home/b"),
        lambda: bob.remove("/home/f"),
        lambda: bob.rename("/home/f", "/home/g"),
    ):
        with pytest.raises(e.PermissionDenied):
            action()
    home.setattr("/home", mode=0o777)
    bob.touch("/home/b")
    home.setattr("/home", mode=0o776)  # w but no x for others
    with pytest.raises(e.PermissionDenied):
        bob.touch("/home/c")


def test_sticky_directory(ns: Any) -> None:
    ns.mkdir("/tmp", 0o1777)
    ns.setattr("/tmp", uid=ALICE)  # alice owns the directory
    carol = ns.user(1002)
    carol.touch("/tmp/c")
    bob = ns.user(BOB)
    bob.touch("/tmp/b")
    with pytest.raises(e.NotPermitted):
        bob.remove("/tmp/c")
    with pytest.raises(e.NotPermitted):
        bob.rename("/tmp/c", "/tmp/x")
    with pytest.raises(e.NotPermitted):
        bob.rename("/tmp/b", "/tmp/c")  # replacing someone else's entry
    bob.rename("/tmp/b", "/tmp/b2")  # his own entry
    ns.user(ALICE).remove("/tmp/c")  # the directory's owner may
    bob.remove("/tmp/b2")


def test_moving_a_directory_to_another_parent_needs_w_on_it(ns: Any) -> None:
    ns.mkdir("/pub", 0o777)
    bob = ns.user(BOB)
    ns.mkdir("/pub/ro", 0o555)
    ns.mkdir("/pub/dst", 0o777)
    with pytest.raises(e.PermissionDenied):
        bob.rename("/pub/ro", "/pub/dst/ro")  # its '..' would change
    bob.rename("/pub/ro", "/pub/ro2")  # same parent: no w on it needed


def test_list_needs_r(home: Any) -> None:
    home.setattr("/home", mode=0o711)
    with pytest.raises(e.PermissionDenied):
        home.user(BOB).listdir("/home")
    assert home.user(BOB).stat("/home/f").uid == ALICE  # x alone allows lookups


def test_file_access_modes(home: Any) -> None:
    bob = home.user(BOB)
    f = home.stat("/home/f")
    assert bob.open("/home/f").session_id == 0  # 0o644: others may read
    for action in (
        lambda: bob.open("/home/f", write=True),
        lambda: bob.open("/home/f", truncate=True),
        lambda: bob.truncate("/home/f", 0),
        lambda: bob.create("/home/f", truncate=True),
        lambda: bob.create("/home/f", open_for_write=True),
        lambda: bob.close(0, f.inode_id, 10),  # an unknown session must prove w
    ):
        with pytest.raises(e.PermissionDenied):
            action()
    home.setattr("/home/f", mode=0o600)
    with pytest.raises(e.PermissionDenied):
        bob.open("/home/f")
    assert not bob.create("/home/f").created  # ensure-exists only: nothing read or written


def test_session_owner_can_close_without_rechecking_mode(home: Any) -> None:
    alice = home.user(ALICE)
    opened = alice.open("/home/f", write=True)
    home.setattr("/home/f", mode=0o400)
    assert alice.close(opened.session_id, opened.inode.inode_id, 5).length == 5


def test_chmod_chown_rules(home: Any) -> None:
    alice, bob = home.user(ALICE, ALICE, (STAFF,)), home.user(BOB)
    with pytest.raises(e.NotPermitted):
        bob.setattr("/home/f", mode=0o777)
    assert alice.setattr("/home/f", mode=0o600).mode == 0o600
    with pytest.raises(e.NotPermitted):
        alice.setattr("/home/f", uid=BOB)
    assert alice.setattr("/home/f", uid=ALICE).uid == ALICE  # no change is allowed
    assert alice.setattr("/home/f", gid=STAFF).gid == STAFF
    with pytest.raises(e.NotPermitted):
        alice.setattr("/home/f", gid=999)
    with pytest.raises(e.NotPermitted):
        bob.setattr("/home/f", gid=STAFF)
    assert home.setattr("/home/f", uid=BOB, gid=999).uid == BOB  # root may
    # A non-root chmod that sets setgid on a file outside the caller's groups drops the bit.
    assert home.user(BOB).setattr("/home/f", mode=0o2755).mode == 0o755


def test_utime_rules(home: Any) -> None:
    bob = home.user(BOB)
    with pytest.raises(e.NotPermitted):
        bob.setattr("/home/f", mtime_ns=5)
    with pytest.raises(e.PermissionDenied):
        bob.setattr("/home/f", times_now=True)
    home.setattr("/home/f", mode=0o666)
    assert bob.setattr("/home/f", times_now=True).mtime_ns > 5
    with pytest.raises(e.NotPermitted):
        bob.setattr("/home/f", mtime_ns=5)  # write permission is not ownership
    assert home.user(ALICE).setattr("/home/f", mtime_ns=5).mtime_ns == 5


def test_recursive_remove_checks_every_directory_and_is_atomic(ns: Any) -> None:
    ns.mkdir("/w", 0o777)
    bob = ns.user(BOB)
    bob.mkdir("/w/t/a", parents=True)
    bob.touch("/w/t/f")
    bob.touch("/w/t/a/g")
    ns.mkdir("/w/t/locked")  # root's, 0o755: bob cannot empty it
    ns.touch("/w/t/locked/x")
    with pytest.raises(e.PermissionDenied):
        bob.remove("/w/t", meta_pb2.RECURSIVE)
    assert ns.names("/w/t") == ["a", "f", "locked"] and ns.names("/w/t/a") == ["g"]
    ns.remove("/w/t/locked", meta_pb2.RECURSIVE)
    assert bob.remove("/w/t", meta_pb2.RECURSIVE) == 4


def test_setgid_directory_inheritance(ns: Any) -> None:
    ns.mkdir("/proj", 0o2777)
    ns.setattr("/proj", gid=STAFF)
    bob = ns.user(BOB)
    assert bob.touch("/proj/f").gid == STAFF
    sub = bob.mkdir("/proj/sub", 0o755)
    assert sub.gid == STAFF and sub.mode & 0o2000
    ns.mkdir("/plain", 0o777)
    assert bob.touch("/plain/f").gid == BOB


def test_new_inodes_belong_to_the_caller(ns: Any) -> None:
    ns.mkdir("/pub", 0o777)
    bob = ns.user(BOB, STAFF)
    for inode in (bob.touch("/pub/f"), bob.mkdir("/pub/d"), bob.symlink("f", "/pub/l")):
        assert (inode.uid, inode.gid) == (BOB, STAFF)
