"""The client's capability cache (client/_caps.py) and the metaserver's grants
(metaserver/capabilities.py, metaserver/ops/access.py), with a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from emberfs.client._caps import RIGHT_READ, RIGHT_WRITE, CapabilityCache
from emberfs.common import capability, capkeys
from emberfs.metaserver.capabilities import CapabilityIssuer
from emberfs.metaserver.ops.access import open_rights
from emberfs.metaserver.ops.perm import Caller
from emberfs.proto import meta_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cache(clock: Clock, rights: int = RIGHT_READ | RIGHT_WRITE) -> tuple[CapabilityCache, list[tuple[int, bool]]]:
    fetched: list[tuple[int, bool]] = []

    async def fetch(inode_id: int, write: bool) -> meta_pb2.Capability:
        fetched.append((inode_id, write))
        await asyncio.sleep(0)
        return meta_pb2.Capability(blob=b"renewed-%d" % len(fetched), rights=rights, ttl_ms=4000)

    return CapabilityCache(fetch, clock=clock), fetched


def test_offered_capability_is_used_until_three_quarters_of_its_life() -> None:
    clock = Clock()
    cache, fetched = _cache(clock)

    async def run() -> None:
        cache.offer(7, meta_pb2.Capability(blob=b"from-open", rights=RIGHT_READ, ttl_ms=4000))
        assert await cache.blob(7, RIGHT_READ) == b"from-open"
        clock.now += 2.9
        assert await cache.blob(7, RIGHT_READ) == b"from-open"
        assert fetched == []
        clock.now += 0.2  # past 3 s of 4
        assert await cache.blob(7, RIGHT_READ) == b"renewed-1"
        assert fetched == [(7, False)]
        # The renewal granted read and write (the fake's rights): writes use it too.
        assert await cache.blob(7, RIGHT_WRITE) == b"renewed-1"
        # A read-only grant does not serve writes: those are asked for (write=True).
        cache.offer(8, meta_pb2.Capability(blob=b"read-only", rights=RIGHT_READ, ttl_ms=4000))
        assert await cache.blob(8, RIGHT_WRITE) == b"renewed-2"
        assert fetched[-1] == (8, True)

    asyncio.run(run())


def test_concurrent_renewals_share_one_request_and_drop_forces_one() -> None:
    clock = Clock()
    cache, fetched = _cache(clock)

    async def run() -> None:
        blobs = await asyncio.gather(*(cache.blob(9, RIGHT_READ) for _ in range(20)))
        assert set(blobs) == {b"renewed-1"} and fetched == [(9, False)]
        cache.drop(9, RIGHT_READ, b"something else")  # not the one held: nothing happens
        assert await cache.blob(9, RIGHT_READ) == b"renewed-1"
        cache.drop(9, RIGHT_READ, b"renewed-1")
        assert await cache.blob(9, RIGHT_READ) == b"renewed-2"

    asyncio.run(run())


def test_empty_grants_without_tokens_never_renew() -> None:
    clock = Clock()
    cache, fetched = _cache(clock)

    async def run() -> None:
        cache.offer(3, meta_pb2.Capability(rights=RIGHT_READ | RIGHT_WRITE))  # ttl 0: a cluster without tokens
        clock.now += 10**6
        assert await cache.blob(3, RIGHT_WRITE) == b""
        assert fetched == []

    asyncio.run(run())


def test_a_renewal_without_the_right_is_permission_error() -> None:
    cache, _ = _cache(Clock(), rights=RIGHT_READ)

    async def run() -> None:
        with pytest.raises(PermissionError):
            await cache.blob(5, RIGHT_WRITE)

    asyncio.run(run())


# (mode, caller uid, write) -> rights of the open; the permission check itself ran before
RIGHTS = [
    (0o644, 1000, False, RIGHT_READ),
    (0o644, 1000, True, RIGHT_READ | RIGHT_WRITE),  # owner rw
    (0o200, 1000, True, RIGHT_WRITE),  # write-only file: no read right rides along
    (0o000, 0, True, RIGHT_READ | RIGHT_WRITE),  # root
]


@pytest.mark.parametrize("mode, uid, write, rights", RIGHTS)
def test_open_rights(mode: int, uid: int, write: bool, rights: int) -> None:
    inode = meta_pb2.Inode(inode_id=4, type=meta_pb2.FILE, mode=mode, uid=1000, gid=1000)
    assert open_rights(Caller(uid, uid), inode, write=write) == rights


def test_issuer_signs_with_the_signing_key_and_rounds_expiry_up(tmp_path: Path) -> None:
    path = capkeys.write_keys_file(tmp_path / "keys.json")
    ring = capkeys.KeyRing(path)
    issuer = CapabilityIssuer(ring, 60.0, clock=lambda: 1_000.2)
    grant = issuer.grant(11, RIGHT_READ)
    cap = capability.verify(grant.blob, ring.keys.keys)
    assert (cap.inode_id, cap.rights, cap.key_id, cap.expires_ms) == (11, RIGHT_READ, 1, 1_061_000)
    assert grant.ttl_ms == 60_000 and grant.rights == RIGHT_READ
    assert CapabilityIssuer(ring, 60.0, clock=lambda: 1_000.7).grant(11, RIGHT_READ).blob == grant.blob
    assert CapabilityIssuer(None).grant(11, RIGHT_READ) == meta_pb2.Capability(rights=RIGHT_READ)
