"""A full disk on one storage target (issue 9, "Resource faults": ENOSPC fails the write
cleanly, with no partial commit and no corrupted replica).

A 3-node cluster with chains of 3 replicas, where node FULL_NODE keeps its data on a
small file system of its own: a 16 MiB tmpfs, else a loop-mounted 32 MiB ext4 image
(both need root; without either the test is skipped and says why). Files are written
through a Client until a write fails. Then:

- the failing write raised OSError(ENOSPC) (storage/oserrors.py: ENOSPC -> NoSpace);
- every file acknowledged before reads back byte-exact through a Client, and from
  every replica (raw Read of each chunk on each target, the full one included);
- the file whose write failed does not read back as complete: what it shows is a
  prefix of what was written, and every chunk any replica holds of it is identical on
  all replicas that hold it and has a valid CRC (no replica has a half-written chunk);
- the full node (the chains' tail, as LocalCluster orders them) is still running
  and serving reads; filling the last pages with small files (so that the target's
  LMDB meets the full disk too) fails with ENOSPC as well;
- once files are deleted and chunk GC has freed their space, writes succeed again.

The file system is unmounted in teardown, whatever happened.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

CHUNK = 64 * 1024
FILE_BYTES = 8 * CHUNK + 1000  # nine chunks, the last a short one
FULL_NODE = 3
MAX_FILES = 200  # a bound on the filling loop: a 32 MiB disk holds fewer than 70 such files
GC_WAIT_S = 30.0


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _mount_small(directory: Path, image: Path) -> str:
    """Mount a small file system on `directory`; its description, or skip with why not."""
    directory.mkdir(parents=True)
    tmpfs = _run("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(directory))
    if tmpfs.returncode == 0:
        return "tmpfs 16 MiB"
    steps = [("truncate", "-s", "32M", str(image)), ("mkfs.ext4", "-q", "-F", str(image)),
             ("mount", "-o", "loop", str(image), str(directory))]
    for step in steps:
        try:
            done = _run(*step)
        except FileNotFoundError:
            pytest.skip(f"no small file system: tmpfs failed ({tmpfs.stderr.strip()}) and {step[0]} is missing")
        if done.returncode != 0:
            pytest.skip(f"no small file system: tmpfs failed ({tmpfs.stderr.strip()}); "
                        f"{' '.join(step)}: {done.stderr.strip()}")
    return "loop-mounted ext4 32 MiB"


@pytest.fixture
def small_disk_cluster(tmp_path: Path) -> Iterator[tuple[LocalCluster, Path]]:
    full_dir = tmp_path / "cluster" / f"node-{FULL_NODE}"
    what = _mount_small(full_dir, tmp_path / "disk.img")
    print(f"node {FULL_NODE} data on {what}")
    try:
        cluster = LocalCluster(tmp_path / "cluster", nodes=3, replicas=3, chunk_size=CHUNK, heartbeat_timeout=15.0)
        cluster.start(timeout=60)
        try:
            yield cluster, full_dir
        finally:
            cluster.stop()
    finally:
        done = _run("umount", str(full_dir))
        if done.returncode != 0:  # a process still holding a file: lazily, so the next run is not blocked
            _run("umount", "-l", str(full_dir))


def _content(i: int) -> bytes:
    return random.Random(i).randbytes(FILE_BYTES)


async def _replicas(read_replicas: Any, meta: str, stat: Any) -> dict[int, dict[int, bytes]]:
    """What each replica holds of the file: {chunk index: {target_id: bytes}}, for the
    chunks the replica has (a chunk it does not have is left out)."""
    return {index: {target: reply.data for target, reply in copies.items() if reply.exists}
            for index, copies in (await read_replicas(meta, stat)).items()}


async def _fill(fs: Client) -> tuple[list[int], int, OSError]:
    """Write /fill/<i> until a write fails: (the acknowledged, the failed one, its error)."""
    await fs.mkdir("/fill")
    done: list[int] = []
    for i in range(MAX_FILES):
        try:
            await fs.write_file(f"/fill/{i}", _content(i))
        except OSError as exc:
            return done, i, exc
        done.append(i)
    raise AssertionError(f"{MAX_FILES} files of {FILE_BYTES} bytes fit on the small disk")


async def _squeeze(fs: Client) -> int:
    """Fill the last pages with small files until one fails too: the chunk store's
    LMDB then meets the full disk as well. Every failure must still be ENOSPC."""
    for i in range(MAX_FILES):
        try:
            await fs.write_file(f"/fill/small-{i}", b"s" * 3000)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, repr(exc)
            return i
    raise AssertionError(f"{MAX_FILES} small files fit on a full disk")


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def test_a_full_target_fails_the_write_cleanly_and_recovers_after_deletes(
        small_disk_cluster: tuple[LocalCluster, Path], read_replicas: Any) -> None:
    cluster, full_dir = small_disk_cluster
    meta = cluster.meta_address

    async def scenario() -> None:
        async with Client(meta, uid=0, gid=0, groups=[]) as fs:
            done, failed, error = await _fill(fs)
            print(f"{len(done)} files of {FILE_BYTES} bytes acknowledged; file {failed} failed: {error!r}; "
                  f"{_free_bytes(full_dir)} bytes free on the full disk")
            assert error.errno == errno.ENOSPC, repr(error)
            assert len(done) >= 3, "the small disk filled up before it held anything"
            assert cluster.storage[FULL_NODE - 1].running, cluster.storage[FULL_NODE - 1].log_tail()

            for i in done:
                assert await fs.read_file(f"/fill/{i}") == _content(i), f"file {i}"
                for index, copies in (await _replicas(read_replicas, meta, await fs.stat(f"/fill/{i}"))).items():
                    assert len(copies) == 3, f"file {i} chunk {index} is on targets {sorted(copies)} only"
                    want = _content(i)[index * CHUNK:(index + 1) * CHUNK]
                    assert all(copy == want for copy in copies.values()), f"file {i} chunk {index}"

            squeezed = await _squeeze(fs)
            print(f"then {squeezed} small files; {_free_bytes(full_dir)} bytes free")

            path, want = f"/fill/{failed}", _content(failed)
            if await fs.exists(path):
                shown = await fs.read_file(path)
                print(f"the failed file exists and reads back {len(shown)} of its {len(want)} bytes")
                assert len(shown) < len(want) and want.startswith(shown), (
                    f"the failed file reads back {len(shown)} bytes that are not a prefix of what was written")
                for index, copies in (await _replicas(read_replicas, meta, await fs.stat(path))).items():
                    # The chunk's committed bytes, on every replica that committed it.
                    assert len(set(copies.values())) == 1, f"chunk {index} of the failed file differs between replicas"
                    piece = want[index * CHUNK:(index + 1) * CHUNK]
                    assert next(iter(copies.values())) == piece, f"chunk {index} of the failed file is garbage"
                await fs.remove(path)

            free_before = _free_bytes(full_dir)
            for i in done[::2]:
                await fs.remove(f"/fill/{i}")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + GC_WAIT_S
            while _free_bytes(full_dir) < free_before + 4 * FILE_BYTES:
                assert loop.time() < deadline, f"chunk GC freed no space within {GC_WAIT_S} s"
                await asyncio.sleep(0.2)

            again = _content(10_000)
            await fs.write_file("/fill/again", again)
            assert await fs.read_file("/fill/again") == again
            for index, copies in (await _replicas(read_replicas, meta, await fs.stat("/fill/again"))).items():
                assert len(copies) == 3 and set(copies.values()) == {again[index * CHUNK:(index + 1) * CHUNK]}
            for i in done[1::2]:
                assert await fs.read_file(f"/fill/{i}") == _content(i), f"file {i} after the deletes"

    asyncio.run(asyncio.wait_for(scenario(), 150))
    for name, proc in cluster.processes():
        assert proc.running, f"{name} exited: {proc.log_tail()}"
