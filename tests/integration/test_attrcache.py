"""The client's attribute cache (client/_attrcache.py) against real clusters on 127.0.0.1.

Two or more real clients per test: a reader whose repeated reads by path must not reach
the metaserver (counted by the client's own per-method RPC counter, `_meta.calls`: the
metaserver keeps no per-call metrics), and a writer in another Client whose changes the
reader must see at its next open() or after its attr_timeout, never later; the
reader's own changes it must see at once. A cluster with tokens shows a chmod by
another user enforced within the attribute timeout, and within the capability's
lifetime even when the timeout is longer.

Run: python -m pytest tests/integration/test_attrcache.py -q
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from emberfs.client import Client, SyncClient
from emberfs.client._launch import LocalCluster

CHUNK = 64 * 1024  # cluster3's chunk size
LONG = 60.0  # an attr_timeout no test outlives: everything seen early is the client's doing
GC_WAIT_S = 20.0  # deleted files' chunks are collected every second; bound for the polls


def _run(coro: Awaitable[Any], timeout: float = 90.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def _calls(fs: Client) -> int:
    """Every RPC this client sent to the metaserver (Meta and Mgmt), retries included."""
    return sum(fs._meta.calls.values())


def _bytes(tag: bytes, n: int) -> bytes:
    return (tag * (n // len(tag) + 1))[:n]


@pytest.fixture(scope="module")
def area(cluster3: Any) -> str:
    """A world-writable directory on cluster3 for this module's files."""
    path = f"/attrcache-{uuid.uuid4().hex[:8]}"

    async def make() -> None:
        async with Client(cluster3.meta_address, uid=0, gid=0, groups=[]) as root:
            await root.mkdir(path)
            await root.chmod(path, 0o1777)

    _run(make())
    return path


def _clients(cluster3: Any, *timeouts: float) -> list[Client]:
    return [Client(cluster3.meta_address, uid=1000, gid=1000, groups=[], attr_timeout=t) for t in timeouts]


# -- no round trip within the timeout -------------------------------------------------------


def test_repeated_reads_within_the_timeout_make_no_metaserver_call(cluster3: Any, area: str) -> None:
    a, b = f"{area}/repeat-a", f"{area}/repeat-b"
    data = _bytes(b"repeat", 3 * CHUNK + 100)

    async def check() -> None:
        writer, reader, uncached = _clients(cluster3, LONG, LONG, 0.0)
        async with writer, reader, uncached:
            await writer.write_file(a, data)
            await writer.write_file(b, data[:1000])
            assert await reader.read_range(a, 10, 100) == data[10:110]  # looks a up: one Open
            assert reader._meta.calls["Open"] == 1
            before = _calls(reader)
            buffer = bytearray(len(data))
            assert await reader.read_range(a, CHUNK - 5, 10) == data[CHUNK - 5:CHUNK + 5]
            assert await reader.read_file(a) == data
            assert await reader.read_into(a, buffer) == len(data) and buffer == data
            assert await reader.read_ranges([(a, 0, 3), (a, 2 * CHUNK, 3)]) == [data[:3], data[2 * CHUNK:2 * CHUNK + 3]]
            assert _calls(reader) == before, reader._meta.calls
            # a second file: looked up once, then reused in its turn
            assert await reader.read_ranges([(a, 0, 3), (b, 0, 3)]) == [data[:3], data[:3]]
            assert await reader.read_file(b) == data[:1000]
            assert _calls(reader) == before + 1 and reader._meta.calls["Open"] == 2
            # attr_timeout=0: every read by path asks the metaserver, as before the cache
            for _ in range(3):
                assert await uncached.read_range(a, 0, 10) == data[:10]
            assert uncached._meta.calls["Open"] == 3

    _run(check())


def test_misses_of_one_path_at_once_share_one_open(cluster3: Any, area: str) -> None:
    path = f"{area}/shared-miss"

    async def check() -> None:
        writer, reader = _clients(cluster3, LONG, LONG)
        async with writer, reader:
            await writer.write_file(path, b"x" * 5000)
            got = await asyncio.gather(*(reader.read_range(path, i, 10) for i in range(20)))
            assert got == [b"x" * 10] * 20
            assert reader._meta.calls["Open"] == 1

    _run(check())


# -- another client's changes -----------------------------------------------------------------


def test_another_clients_rewrite_is_seen_at_open_and_after_the_timeout(cluster3: Any, area: str) -> None:
    path = f"{area}/rewrite"
    v1, v2, v3 = _bytes(b"one", 1000), _bytes(b"two", 3000), _bytes(b"three", 5000)

    async def check() -> None:
        writer, reader, short = _clients(cluster3, LONG, LONG, 0.5)
        async with writer, reader, short:
            await writer.write_file(path, v1)
            assert await reader.read_file(path) == v1
            assert await short.read_file(path) == v1
            await writer.write_file(path, v2)  # the same inode, longer
            # Within the timeout a read by path may use the length it had: the bytes are
            # always the storage servers' (never cached), the length is the old one.
            assert await reader.read_file(path) == v2[:len(v1)]
            # Close-to-open: an open asks, sees the rewrite, and refreshes the cache.
            async with reader.open(path, "rb") as f:
                assert await f.read() == v2
            before = _calls(reader)
            assert await reader.read_file(path) == v2
            assert _calls(reader) == before
            # The short timeout's reader sees it by path once its entry has aged out.
            await asyncio.sleep(0.6)
            assert await short.read_file(path) == v2
            await writer.write_file(path, v3)
            await asyncio.sleep(0.6)
            assert await short.read_range(path, 4000, 2000) == v3[4000:]

    _run(check())


async def _joined(parts: Awaitable[list[bytes]]) -> bytes:
    return b"".join(await parts)


def test_a_file_shrunk_or_deleted_by_another_client_never_reads_as_zeros(cluster3: Any, area: str) -> None:
    """A cached length past the file's end would read the missing chunks as holes: the
    read notices the zeros, asks again and reads the file as it is now."""
    path = f"{area}/shrink"
    big, small = _bytes(b"big", 3 * CHUNK + 7), _bytes(b"small", 100)

    async def read_into(fs: Client) -> bytes:
        buffer = bytearray(len(big))
        return bytes(buffer[:await fs.read_into(path, buffer)])

    reads: list[Callable[[Client], Awaitable[bytes]]] = [
        lambda fs: fs.read_file(path),
        lambda fs: fs.read_range(path, 0, 10 * CHUNK),
        read_into,
        lambda fs: _joined(fs.read_ranges([(path, 0, 5), (path, 5, 10 * CHUNK)])),
    ]

    async def check() -> None:
        writer, reader = _clients(cluster3, LONG, LONG)
        async with writer, reader:
            for read in reads:
                await writer.write_file(path, big)
                await reader.open(path, "rb")  # caches the big file's length
                assert await read(reader) == big
                await writer.write_file(path, small)  # chunk 0 cut, chunks 1..3 removed on storage
                opens = reader._meta.calls["Open"]
                assert await read(reader) == small
                assert reader._meta.calls["Open"] == opens + 1  # asked again once
            # Deleted: until its chunks are collected the cached inode still reads its
            # old bytes (as NFS within its timeout); after, the read sees the file gone.
            await writer.remove(path)
            deadline = time.monotonic() + GC_WAIT_S
            while True:
                try:
                    assert await reader.read_file(path) == small
                except FileNotFoundError:
                    break
                assert time.monotonic() < deadline, "the deleted file was still read after its chunks' GC"
                await asyncio.sleep(0.2)

    _run(check())


def test_a_file_replaced_by_rename_reads_old_or_new_never_a_mix(cluster3: Any, area: str) -> None:
    """The atomic-replace pattern (write a temporary, rename it over): a reader with the
    old inode cached reads the old bytes until they are collected, then the new file."""
    path, tmp = f"{area}/replaced", f"{area}/replaced.tmp"
    old, new = _bytes(b"old", 2 * CHUNK), _bytes(b"NEW", 2 * CHUNK)

    async def check() -> None:
        writer, reader = _clients(cluster3, LONG, LONG)
        async with writer, reader:
            await writer.write_file(path, old)
            assert await reader.read_file(path) == old
            await writer.write_file(tmp, new)
            await writer.rename(tmp, path)
            deadline = time.monotonic() + GC_WAIT_S
            while (got := await reader.read_file(path)) != new:
                assert got == old
                assert time.monotonic() < deadline, "still the replaced file after its chunks' GC"
                await asyncio.sleep(0.2)

    _run(check())


# -- this client's own changes ------------------------------------------------------------------


def test_own_changes_are_seen_at_once(cluster3: Any, area: str) -> None:
    base = f"{area}/own"

    async def check() -> None:
        (fs,) = _clients(cluster3, LONG)
        async with fs:
            await fs.mkdir(base)
            f, g, link, sym = f"{base}/f", f"{base}/g", f"{base}/link", f"{base}/sym"
            await fs.write_file(f, b"first")
            assert await fs.read_file(f) == b"first"
            await fs.write_file(f, b"second, longer")  # write_file: Create + Close
            assert await fs.read_file(f) == b"second, longer"
            await fs.truncate(f, 6)
            assert await fs.read_file(f) == b"second"
            async with fs.open(f, "ab") as out:  # an EmberFile's close reports the length
                assert await fs.read_file(f) == b"second"  # cached while the file is open
                await out.write(b" appended")
            assert await fs.read_file(f) == b"second appended"
            async with fs.open(f, "r+b") as out:  # so does its flush (Sync)
                assert await fs.read_file(f) == b"second appended"
                await out.seek(0, 2)
                await out.write(b"!")
                await out.flush()
                assert await fs.read_file(f) == b"second appended!"
            # hard link and symlink: another name of the same inode sees a change made through one
            await fs.link(f, link)
            await fs.symlink(f, sym)
            assert await fs.read_file(link) == await fs.read_file(sym) == b"second appended!"
            await fs.write_file(f, b"via f, longer than it was")
            assert await fs.read_file(link) == await fs.read_file(sym) == b"via f, longer than it was"
            # rename: the old name is gone, the new one is the file, a symlink to the old dangles
            await fs.write_file(g, b"gee")
            assert await fs.read_file(g) == b"gee"
            await fs.rename(f, g)
            assert await fs.read_file(g) == b"via f, longer than it was"
            for gone in (f, sym):
                with pytest.raises(FileNotFoundError):
                    await fs.read_file(gone)
            # symlink re-pointed
            await fs.remove(sym)
            await fs.symlink(link, sym)
            assert await fs.read_file(sym) == b"via f, longer than it was"
            # remove, and a directory rename: everything under it moves
            await fs.remove(link)
            with pytest.raises(FileNotFoundError):
                await fs.read_file(link)
            await fs.rename(base, base + "-moved")
            with pytest.raises(FileNotFoundError):
                await fs.read_range(g, 0, 1)
            assert await fs.read_file(f"{base}-moved/g") == b"via f, longer than it was"
            # chmod by the owner takes away read permission: refused at once
            await fs.chmod(f"{base}-moved/g", 0o200)
            with pytest.raises(PermissionError):
                await fs.read_file(f"{base}-moved/g")
            await fs.chmod(f"{base}-moved/g", 0o600)
            assert await fs.read_file(f"{base}-moved/g") == b"via f, longer than it was"
            # a directory chmod: paths through it are refused at once
            await fs.chmod(f"{base}-moved", 0o600)
            with pytest.raises(PermissionError):
                await fs.read_file(f"{base}-moved/g")
            await fs.chmod(f"{base}-moved", 0o700)
            await fs.rmtree(f"{base}-moved")
            with pytest.raises(FileNotFoundError):
                await fs.read_file(f"{base}-moved/g")

    _run(check())


# -- the sync facade passes the option -----------------------------------------------------------


def test_sync_client_passes_attr_timeout(cluster3: Any, area: str) -> None:
    path = f"{area}/sync"
    with SyncClient(cluster3.meta_address, uid=1000, gid=1000, groups=[], attr_timeout=LONG) as cached, \
            SyncClient(cluster3.meta_address, uid=1000, gid=1000, groups=[], attr_timeout=0) as uncached:
        cached.write_file(path, b"sync bytes")
        for fs in (cached, uncached):
            for _ in range(3):
                assert fs.read_range(path, 0, 4) == b"sync"
        assert cached._runner is not None and uncached._runner is not None
        assert cached._runner.client._meta.calls["Open"] == 1
        assert uncached._runner.client._meta.calls["Open"] == 3


def test_fsspec_passes_attr_timeout(cluster3: Any, area: str) -> None:
    from emberfs.client.fsspec import EmberFileSystem

    path = f"{area}/fsspec"
    opens = {}
    for timeout in (LONG, 0.0):
        fs = EmberFileSystem(address=cluster3.meta_address, uid=1000, gid=1000, groups=[], attr_timeout=timeout,
                             skip_instance_cache=True)
        fs.pipe_file(path, b"fsspec bytes")
        for _ in range(3):
            assert fs.cat_file(path, start=0, end=6) == b"fsspec"
        (client_future,) = fs._clients._clients.values()
        opens[timeout] = client_future.result()._meta.calls["Open"]
    assert opens == {LONG: 1, 0.0: 3}


# -- permissions, with capabilities ---------------------------------------------------------------

TOKENS = {
    "alice": "user-token-alice-attrcache-000000",
    "bob": "user-token-bob-attrcache-00000000",
    "admin": "admin-token-attrcache-00000000000",
    "server": "server-token-attrcache-000000000",
}
TTL_S = 4.0  # the capability lifetime; the client renews at 3/4 of it


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("attrcache-auth")
    tokens_file = base / "tokens.json"
    tokens_file.write_text(json.dumps({"tokens": [
        {"name": "alice", "token": TOKENS["alice"], "uid": 1000, "gid": 1000},
        {"name": "bob", "token": TOKENS["bob"], "uid": 2000, "gid": 2000},
        {"name": "ops", "token": TOKENS["admin"], "admin": True},
        {"name": "storage", "token": TOKENS["server"], "server": True},
    ]}))
    tokens_file.chmod(0o600)
    cluster = LocalCluster(base / "cluster", nodes=1, replicas=1, chunk_size=CHUNK, tokens_file=tokens_file,
                           capability_ttl=TTL_S, heartbeat_timeout=15.0)
    cluster.start(timeout=60.0)
    try:
        async def setup() -> None:
            async with Client(cluster.meta_address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
                await root.mkdir("/open")
                await root.chmod("/open", 0o1777)

        _run(setup())
        yield cluster
    finally:
        cluster.stop()


async def _refused_after(fs: Client, read: Callable[[Client], Awaitable[Any]], since: float, bound: float) -> float:
    """Seconds from `since` until read(fs) is refused (PermissionError); fails past `bound`."""
    while True:
        try:
            await read(fs)
        except PermissionError:
            return time.monotonic() - since
        assert time.monotonic() - since < bound, f"still readable {bound} s after the chmod"
        await asyncio.sleep(0.05)


def test_another_users_chmod_is_enforced_within_the_timeout_or_the_capability(auth_cluster: LocalCluster) -> None:
    """Bob's clients hold alice's file cached with its read capability when she makes it
    0600. With attr_timeout 0.5 s the next read after the entry ages out asks the
    metaserver, which refuses. With attr_timeout 60 s the entry outlives the capability:
    its renewal (due at 3/4 of the TTL) is refused by the metaserver, the read drops the
    entry and asks again, refused. A client that kept using the old capability anyway
    is refused by the storage servers once it expires (test_auth_datapath.py)."""
    path, data = "/open/alice-file", b"alice's bytes " * 500
    address = auth_cluster.meta_address

    async def check() -> None:
        async with Client(address, token=TOKENS["alice"]) as alice:
            await alice.write_file(path, data, mode=0o644)
            async with Client(address, token=TOKENS["bob"], attr_timeout=0.5) as quick, \
                    Client(address, token=TOKENS["bob"], attr_timeout=LONG) as slow:
                for fs in (quick, slow):
                    assert await fs.read_range(path, 0, 5) == b"alice"
                await alice.chmod(path, 0o600)
                chmod_at = time.monotonic()

                async def read(fs: Client) -> bytes:
                    return await fs.read_range(path, 0, 5)

                quick_s, slow_s = await asyncio.gather(
                    _refused_after(quick, read, chmod_at, 0.5 + 1.5),
                    _refused_after(slow, read, chmod_at, TTL_S + 1.5),
                )
                print(f"refused {quick_s:.2f} s after the chmod with attr_timeout 0.5, {slow_s:.2f} s with "
                      f"attr_timeout {LONG:g} (capability TTL {TTL_S:g} s)")
                assert quick_s < slow_s  # the 0.5 s entry aged out before the capability was due
                assert slow._meta.calls["GetCapability"] >= 1  # the renewal that was refused

    _run(check())


def test_open_is_refused_at_once_and_drops_the_entry(auth_cluster: LocalCluster) -> None:
    path = "/open/alice-open"
    address = auth_cluster.meta_address

    async def check() -> None:
        async with Client(address, token=TOKENS["alice"]) as alice, \
                Client(address, token=TOKENS["bob"], attr_timeout=LONG) as bob:
            await alice.write_file(path, b"for bob, for now", mode=0o644)
            assert await bob.read_range(path, 0, 3) == b"for"
            await alice.chmod(path, 0o600)
            with pytest.raises(PermissionError):  # close-to-open: whatever the timeout
                await bob.open(path, "rb")
            opens = bob._meta.calls["Open"]
            with pytest.raises(PermissionError):  # the refused open took the entry with it
                await bob.read_range(path, 0, 3)
            assert bob._meta.calls["Open"] == opens + 1

    _run(check())
