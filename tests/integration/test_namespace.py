"""The Client's namespace calls against a real metaserver: results and OSError mapping."""

from __future__ import annotations

import errno
import stat
import time

import pytest

from emberfs.client import Client, StatFsResult, StatResult

pytestmark = pytest.mark.timeout(60)


def test_root_and_directories(shared_meta, workdir, arun) -> None:
    async def body() -> None:
        async with Client(shared_meta.address) as c:
            root = await c.stat("/")
            assert isinstance(root, StatResult) and stat.S_ISDIR(root.st_mode) and root.st_ino == 1
            await c.mkdir(f"{workdir}/d", 0o750)
            st = await c.stat(f"{workdir}/d")
            assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750 and st.st_nlink == 2
            assert st.st_uid == c.identity.uid
            await c.makedirs(f"{workdir}/p/q/r")
            await c.makedirs(f"{workdir}/p/q/r", exist_ok=True)
            with pytest.raises(FileExistsError) as info:
                await c.makedirs(f"{workdir}/p/q/r")
            assert info.value.filename == f"{workdir}/p/q/r"
            with pytest.raises(FileExistsError):
                await c.mkdir(f"{workdir}/d")
            with pytest.raises(FileNotFoundError):
                await c.mkdir(f"{workdir}/missing/d")
            assert await c.listdir(workdir) == ["d", "p"]
            assert (await c.stat(workdir)).st_nlink == 4
            with pytest.raises(OSError) as info:
                await c.rmdir(f"{workdir}/p")
            assert info.value.errno == errno.ENOTEMPTY
            await c.rmdir(f"{workdir}/d")
            await c.rmtree(f"{workdir}/p")
            assert await c.listdir(workdir) == []
            assert not await c.exists(f"{workdir}/p")

    arun(body())


def test_files_links_and_symlinks(shared_meta, workdir, arun) -> None:
    async def body() -> None:
        async with Client(shared_meta.address) as c:
            f = f"{workdir}/f"
            await c.touch(f)
            st = await c.stat(f)
            assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644 and st.st_size == 0
            assert st.chunk_size > 0 and st.stripe > 0
            with pytest.raises(FileExistsError):
                await c.touch(f, exist_ok=False)
            with pytest.raises(NotADirectoryError):
                await c.mkdir(f"{f}/x")
            with pytest.raises(NotADirectoryError):
                await c.listdir(f)
            with pytest.raises(IsADirectoryError):
                await c.remove(workdir)

            await c.link(f, f"{workdir}/hard")
            assert (await c.stat(f)).st_nlink == 2
            assert (await c.stat(f"{workdir}/hard")).st_ino == st.st_ino
            with pytest.raises(PermissionError):
                await c.link(workdir, f"{workdir}/dirlink")  # no hard links to directories

            await c.symlink("f", f"{workdir}/rel")
            await c.symlink(f, f"{workdir}/abs")
            assert await c.readlink(f"{workdir}/abs") == f
            lst = await c.lstat(f"{workdir}/abs")
            assert stat.S_ISLNK(lst.st_mode) and lst.st_size == len(f)
            assert (await c.stat(f"{workdir}/abs")).st_ino == st.st_ino
            with pytest.raises(OSError) as info:
                await c.readlink(f)
            assert info.value.errno == errno.EINVAL

            await c.symlink(f"{workdir}/loop2", f"{workdir}/loop1")
            await c.symlink(f"{workdir}/loop1", f"{workdir}/loop2")
            with pytest.raises(OSError) as info:
                await c.stat(f"{workdir}/loop1")
            assert info.value.errno == errno.ELOOP
            assert await c.exists(f"{workdir}/abs")
            await c.symlink(f"{workdir}/nothing", f"{workdir}/dangling")
            assert not await c.exists(f"{workdir}/dangling")
            assert not await c.exists(f"{f}/below-a-file")  # ENOTDIR reads as absent

            await c.remove(f)
            assert (await c.stat(f"{workdir}/hard")).st_nlink == 1
            assert sorted(await c.listdir(workdir)) == ["abs", "dangling", "hard", "loop1", "loop2", "rel"]

    arun(body())


def test_rename(shared_meta, workdir, arun) -> None:
    async def body() -> None:
        async with Client(shared_meta.address) as c:
            await c.makedirs(f"{workdir}/a/sub")
            await c.touch(f"{workdir}/a/f")
            await c.rename(f"{workdir}/a/f", f"{workdir}/g")
            assert await c.listdir(workdir) == ["a", "g"]
            await c.touch(f"{workdir}/h")
            await c.rename(f"{workdir}/g", f"{workdir}/h")  # replaces a file
            assert await c.listdir(workdir) == ["a", "h"]
            with pytest.raises(OSError) as info:
                await c.rename(f"{workdir}/a", f"{workdir}/a/sub/inside")
            assert info.value.errno == errno.EINVAL
            assert info.value.filename == f"{workdir}/a" and info.value.filename2 == f"{workdir}/a/sub/inside"
            with pytest.raises(FileNotFoundError):
                await c.rename(f"{workdir}/nope", f"{workdir}/x")
            with pytest.raises(IsADirectoryError):
                await c.rename(f"{workdir}/h", f"{workdir}/a")
            with pytest.raises(NotADirectoryError):
                await c.rename(f"{workdir}/a", f"{workdir}/h")
            await c.mkdir(f"{workdir}/empty")
            await c.rename(f"{workdir}/a", f"{workdir}/empty")  # replaces an empty directory
            assert await c.listdir(f"{workdir}/empty") == ["sub"]

    arun(body())


def test_attributes(shared_meta, workdir, arun) -> None:
    async def body() -> None:
        async with Client(shared_meta.address) as c:
            f = f"{workdir}/f"
            await c.touch(f)
            await c.chmod(f, 0o4711)
            assert stat.S_IMODE((await c.stat(f)).st_mode) == 0o4711
            with pytest.raises(OSError) as info:
                await c.chmod(f, 0o17777)
            assert info.value.errno == errno.EINVAL
            await c.chown(f, 1234, -1)
            st = await c.stat(f)
            assert (st.st_uid, st.st_gid) == (1234, c.identity.gid)
            await c.chown(f, -1, 99)
            st = await c.stat(f)
            assert (st.st_uid, st.st_gid) == (1234, 99)
            await c.utime(f, ns=(1_000_000_123, 2_000_000_456))
            st = await c.stat(f)
            assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
            await c.utime(f, (5.5, 6.25))
            st = await c.stat(f)
            assert (st.st_atime, st.st_mtime) == (5.5, 6.25)
            before = time.time()
            await c.touch(f)  # existing: times to now
            assert (await c.stat(f)).st_mtime >= before - 5
            await c.touch(workdir)  # a directory too, as touch(1)
            assert (await c.stat(workdir)).st_mtime >= before - 5
            fs = await c.statfs()
            assert isinstance(fs, StatFsResult) and fs.files >= 1 and fs.directories >= 2
            assert fs.inodes >= fs.files + fs.directories + fs.symlinks

    arun(body())


def test_listdir_attrs_matches_stat(shared_meta, workdir, arun) -> None:
    async def body() -> None:
        async with Client(shared_meta.address) as c:
            await c.mkdir(f"{workdir}/d")
            await c.touch(f"{workdir}/f")
            await c.symlink("f", f"{workdir}/l")
            pairs = await c.listdir_attrs(workdir)
            assert [n for n, _ in pairs] == ["d", "f", "l"]
            for name, st in pairs:
                assert st == await c.lstat(f"{workdir}/{name}")

    arun(body())


def test_rmtree_of_a_file_or_a_symlink(shared_meta, workdir, arun) -> None:
    async def body() -> None:
        async with Client(shared_meta.address) as c:
            await c.makedirs(f"{workdir}/tree/a/b")
            await c.touch(f"{workdir}/tree/a/b/f")
            await c.symlink(f"{workdir}/tree", f"{workdir}/link")
            await c.rmtree(f"{workdir}/link")  # the link only, not what it points to
            assert await c.listdir(workdir) == ["tree"]
            await c.rmtree(f"{workdir}/tree/a/b/f")  # a single file
            assert await c.listdir(f"{workdir}/tree/a/b") == []
            await c.rmtree(f"{workdir}/tree")
            assert await c.listdir(workdir) == []
            with pytest.raises(FileNotFoundError):
                await c.rmtree(f"{workdir}/tree")

    arun(body())


def test_unreachable_server_is_a_connection_error(arun) -> None:
    async def body() -> None:
        async with Client("127.0.0.1:1", timeout=5) as c:
            with pytest.raises(ConnectionError):
                await c.stat("/")

    arun(body())


def test_bad_arguments_are_einval_with_the_path(shared_meta, workdir, arun) -> None:
    async def body() -> None:
        async with Client(shared_meta.address) as c:
            await c.touch(f"{workdir}/f")
            for call in (
                c.chown(f"{workdir}/f", 2**32, -1),
                c.chown(f"{workdir}/f", -1, -7),
                c.truncate(f"{workdir}/f", -1),
                c.chmod(f"{workdir}/f", -1),
                c.mkdir(f"{workdir}/x/../y"),
            ):
                with pytest.raises(OSError) as info:
                    await call
                assert info.value.errno == errno.EINVAL and info.value.filename.startswith(workdir)
            await c.truncate(f"{workdir}/f", 0)
            assert (await c.stat(f"{workdir}/f")).st_uid == c.identity.uid

    arun(body())
