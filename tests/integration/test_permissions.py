"""POSIX permission checks for a caller who is not root (identity from the request header)."""

from __future__ import annotations

import errno
import stat

import pytest

from emberfs.client import Client

pytestmark = pytest.mark.timeout(60)

ALICE = dict(uid=1000, gid=1000, groups=[1000])
BOB = dict(uid=1001, gid=1001, groups=[1001])
ROOT = dict(uid=0, gid=0, groups=[])


def test_non_root_caller_is_refused(shared_meta, workdir, arun) -> None:
    addr = shared_meta.address

    async def body() -> None:
        async with Client(addr, **ROOT) as root, Client(addr, **ALICE) as alice:
            await root.mkdir(f"{workdir}/rootdir", 0o755)
            await root.touch(f"{workdir}/rootdir/rootfile")
            # Writing into a root-owned 0o755 directory.
            with pytest.raises(PermissionError) as info:
                await alice.mkdir(f"{workdir}/rootdir/mine")
            assert info.value.errno == errno.EACCES and info.value.filename == f"{workdir}/rootdir/mine"
            with pytest.raises(PermissionError):
                await alice.touch(f"{workdir}/rootdir/mine")
            with pytest.raises(PermissionError):
                await alice.remove(f"{workdir}/rootdir/rootfile")
            with pytest.raises(PermissionError):
                await alice.rename(f"{workdir}/rootdir/rootfile", f"{workdir}/stolen")
            # Changing another's file: only the owner (or root) may chmod; only root may chown.
            with pytest.raises(PermissionError) as info:
                await alice.chmod(f"{workdir}/rootdir/rootfile", 0o777)
            assert info.value.errno == errno.EPERM
            await alice.touch(f"{workdir}/alices")
            with pytest.raises(PermissionError):
                await alice.chown(f"{workdir}/alices", 1001, -1)
            await alice.chmod(f"{workdir}/alices", 0o600)  # her own: allowed
            # Reading is allowed by 0o755 ...
            assert await alice.listdir(f"{workdir}/rootdir") == ["rootfile"]
            # ... but not through a 0o700 directory (no search or read permission).
            await root.chmod(f"{workdir}/rootdir", 0o700)
            with pytest.raises(PermissionError):
                await alice.listdir(f"{workdir}/rootdir")
            with pytest.raises(PermissionError):
                await alice.stat(f"{workdir}/rootdir/rootfile")
            # Group membership through the supplementary groups in the header.
            await root.chown(f"{workdir}/rootdir", 0, 4242)
            await root.chmod(f"{workdir}/rootdir", 0o770)
            async with Client(addr, uid=1000, gid=1000, groups=[1000, 4242]) as member:
                await member.mkdir(f"{workdir}/rootdir/by-member")
            # Nothing of the refused calls happened.
            assert sorted(await root.listdir(f"{workdir}/rootdir")) == ["by-member", "rootfile"]
            st = await root.stat(f"{workdir}/rootdir/rootfile")
            assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == 0

    arun(body())


def test_sticky_directory(shared_meta, workdir, arun) -> None:
    # workdir is 0o1777 and root-owned, like /tmp.
    addr = shared_meta.address

    async def body() -> None:
        async with Client(addr, **ALICE) as alice, Client(addr, **BOB) as bob:
            await alice.touch(f"{workdir}/a")
            await alice.mkdir(f"{workdir}/adir")
            with pytest.raises(PermissionError):
                await bob.remove(f"{workdir}/a")
            with pytest.raises(PermissionError):
                await bob.rename(f"{workdir}/a", f"{workdir}/b")
            with pytest.raises(PermissionError):
                await bob.rmdir(f"{workdir}/adir")
            await bob.touch(f"{workdir}/b")
            with pytest.raises(PermissionError):
                await bob.rename(f"{workdir}/b", f"{workdir}/a")  # would replace alice's file
            await alice.remove(f"{workdir}/a")
            await alice.rmdir(f"{workdir}/adir")
            await bob.remove(f"{workdir}/b")
            assert await alice.listdir(workdir) == []

    arun(body())
