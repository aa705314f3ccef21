"""The manager-primary election (metaserver/etcdkv/election.py) on a real etcd: exactly
one campaigner wins; a primary that stops renewing is replaced after its lease, one that
resigns at once; and the loser's fence refuses a write while the record names the other
(issue 19)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from emberfs.client._launch import metaserver_process
from emberfs.common.errors import NotPrimary
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.etcdkv.adapter import ClientEtcd
from emberfs.metaserver.etcdkv.client import EtcdClient
from emberfs.metaserver.etcdkv.election import EtcdElection, primary_key
from emberfs.metaserver.etcdkv.launch import EtcdCluster
from emberfs.metaserver.etcdkv.store import EtcdStore

TTL_S = 2
POLL_S = 0.1
BOUND_S = 15.0  # any wait in these tests


class Role:
    """What the election told one metaserver, with the time of each change."""

    def __init__(self) -> None:
        self.primary = False
        self.changes: list[tuple[float, bool]] = []

    def callbacks(self) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
        async def elected() -> None:
            self.primary = True
            self.changes.append((time.monotonic(), True))

        async def deposed() -> None:
            self.primary = False
            self.changes.append((time.monotonic(), False))

        return elected, deposed


async def _until(check: Callable[[], bool], what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > BOUND_S:
            raise AssertionError(f"not within {BOUND_S} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def _election(etcd: EtcdCluster, keyspace: bytes, name: str) -> EtcdElection:
    client = EtcdClient(etcd.endpoints, timeout=0.5)
    return EtcdElection(client, keyspace, name, ttl_s=TTL_S, poll_s=POLL_S)


def test_one_wins_a_silent_primary_is_replaced_after_its_lease(etcd1: EtcdCluster, keyspace: bytes) -> None:
    async def scenario() -> None:
        elections = [_election(etcd1, keyspace, f"127.0.0.1:{9000 + i}") for i in range(3)]
        roles = [Role() for _ in elections]
        tasks = [asyncio.create_task(e.run(*r.callbacks())) for e, r in zip(elections, roles, strict=True)]
        try:
            await _until(lambda: sum(r.primary for r in roles) == 1, "one primary")
            await asyncio.sleep(TTL_S * 1.5)  # renewals keep it: still exactly the same one
            winner = next(i for i, r in enumerate(roles) if r.primary)
            assert sum(r.primary for r in roles) == 1 and roles[winner].primary
            assert len(roles[winner].changes) == 1
            now = time.monotonic()
            assert elections[winner].holds(now)
            assert not any(elections[i].holds(now) for i in range(3) if i != winner)
            assert elections[(winner + 1) % 3].primary_hint == f"127.0.0.1:{9000 + winner}"

            # The winner goes silent (as a kill -9 would leave it): no renewal, no resign.
            tasks[winner].cancel()
            await asyncio.gather(tasks[winner], return_exceptions=True)
            silent_at = time.monotonic()
            took = await _until(lambda: any(r.primary for i, r in enumerate(roles) if i != winner),
                                "a standby takes over")
            assert took >= TTL_S * 0.5, "taken over before the silent primary's lease could expire"
            assert took <= TTL_S + 2.0
            new = next(i for i, r in enumerate(roles) if r.primary and i != winner)
            elected_at = roles[new].changes[-1][0]
            assert elected_at - silent_at >= 0
            assert not elections[winner].holds(time.monotonic())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for e in elections:
                await e.resign()
                e.close()

    asyncio.run(scenario())


def test_a_resigning_primary_is_replaced_at_the_next_poll(etcd1: EtcdCluster, keyspace: bytes) -> None:
    async def scenario() -> None:
        a, b = _election(etcd1, keyspace, "127.0.0.1:9100"), _election(etcd1, keyspace, "127.0.0.1:9101")
        role_a, role_b = Role(), Role()
        task_a = asyncio.create_task(a.run(*role_a.callbacks()))
        await _until(lambda: role_a.primary, "a is primary")
        task_b = asyncio.create_task(b.run(*role_b.callbacks()))
        try:
            await asyncio.sleep(0.5)
            assert not role_b.primary
            task_a.cancel()
            await asyncio.gather(task_a, return_exceptions=True)
            await a.resign()
            took = await _until(lambda: role_b.primary, "b takes over")
            assert took < TTL_S * 0.75, f"a resign should not wait out the lease ({took:.2f} s)"
        finally:
            task_b.cancel()
            await asyncio.gather(task_b, return_exceptions=True)
            for e in (a, b):
                await e.resign()
                e.close()

    asyncio.run(scenario())


def test_the_fence_refuses_a_write_by_a_metaserver_the_record_does_not_name(
        etcd1: EtcdCluster, keyspace: bytes) -> None:
    config = MetaConfig(data_dir="", engine="etcd", etcd_endpoints=tuple(etcd1.endpoints))

    async def scenario() -> None:
        a, b = _election(etcd1, keyspace, "127.0.0.1:9200"), _election(etcd1, keyspace, "127.0.0.1:9201")
        role_a = Role()
        task = asyncio.create_task(a.run(*role_a.callbacks()))
        store = EtcdStore(config, ClientEtcd(EtcdClient(etcd1.endpoints, timeout=5.0)), root=keyspace,
                          max_ops=etcd1.max_txn_ops)
        try:
            await _until(lambda: role_a.primary, "a is primary")
            await store.write(lambda tx: (a.fence(tx), tx.kv.put("mgmt", b"x", b"a")))
            with pytest.raises(NotPrimary, match="127.0.0.1:9200"):
                await store.write(lambda tx: (b.fence(tx), tx.kv.put("mgmt", b"x", b"b")))
            assert store.read(lambda tx: tx.kv.get("mgmt", b"x")) == b"a"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await a.resign()
            a.close()
            b.close()
            await store.aclose()

    asyncio.run(scenario())


def test_the_primary_record_names_the_advertised_address(etcd1: EtcdCluster, keyspace: bytes,
                                                         tmp_path: Path) -> None:
    """A metaserver listening on 0.0.0.0 names its --advertise address as the primary, so
    the "the primary is at" hint others give is one a caller can dial."""
    prefix = keyspace.decode().lstrip("/")
    meta = metaserver_process(tmp_path / "meta", listen="0.0.0.0:0", extra_args=[
        "--engine", "etcd", "--etcd", ",".join(etcd1.endpoints), "--etcd-prefix", prefix,
        "--advertise", "meta-a.example:9000"])
    meta.start(timeout=30.0)
    try:
        with EtcdClient(etcd1.endpoints, timeout=5.0) as client:
            deadline = time.monotonic() + BOUND_S
            record = None
            while record is None and time.monotonic() < deadline:
                record = client.get(primary_key(prefix.encode()))
                time.sleep(0.05)
        assert record is not None and record.value.decode().split(" ", 1)[0] == "meta-a.example:9000"
    finally:
        meta.stop(grace=5.0)
