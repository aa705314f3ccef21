"""ClusterManager over a real LMDB store with a hand-driven clock: persistence across
a reopen, the grace period, the chain-table allocator, and the GC collector with a
fake storage remover (the only stand-in: no storage server runs in unit tests)."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any

import pytest

from emberfs.common.chainstate import LocalState, PublicState
from emberfs.common.errors import Unavailable
from emberfs.common.paths import split_path
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.mgmt.gc import ChunkCollector, Removal
from emberfs.metaserver.mgmt.manager import ClusterManager
from emberfs.metaserver.mgmt.state import Registration, Report
from emberfs.metaserver.ops import create, remove
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.store import MetaStore
from emberfs.proto import meta_pb2

ON, UP = int(LocalState.ONLINE), int(LocalState.UPTODATE)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def config(tmp_path: pathlib.Path) -> MetaConfig:
    return MetaConfig(data_dir=str(tmp_path / "meta"), default_chunk_size=1 << 20, default_stripe=2,
                      heartbeat_interval_s=0.5, heartbeat_timeout_s=2.0)


def _reg(node_id: int, port: int | None = None, k: int = 1) -> Registration:
    return Registration(node_id, f"127.0.0.1:{port or 7000 + node_id}",
                        tuple(Report(node_id * 100 + i, ON) for i in range(1, k + 1)))


async def _three_nodes(manager: ClusterManager, k: int = 1) -> None:
    for n in (1, 2, 3):
        await manager.register(_reg(n, k=k))


def test_state_survives_a_reopen_and_nobody_is_dead_after_it(config: MetaConfig) -> None:
    clock = Clock()

    async def first() -> tuple[int, dict[int, Any]]:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=clock)
            await _three_nodes(manager)
            chains, created = await manager.init_chains(3)
            assert created and [c.chain_id for c in chains] == [1]
            await manager.set_admin_state(201, True)
            clock.now += 10  # everyone silent: all dead
            await manager.heartbeat(1, [Report(101, UP)])
            await manager.tick()
            state = manager.state
            assert state.alive == {1} and state.admin_offline == {201}
            return state.routing_version, dict(state.chains)

    version, chains = asyncio.run(first())

    async def second() -> None:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=clock)
            state = manager.state
            assert state.routing_version == version and dict(state.chains) == chains
            assert state.admin_offline == {201} and state.alive == {1, 2, 3}
            assert state.targets[101].local_state == UP and state.targets[301].chain_id == 1
            await manager.tick()  # a fresh grace period: no one dies at start
            assert manager.state.alive == {1, 2, 3}
            again, created = await manager.init_chains(3)
            assert not created and again == [chains[1]]

    asyncio.run(second())


def test_a_restarted_manager_waits_out_reconnecting_nodes(config: MetaConfig) -> None:
    """After a restart, nodes get the heartbeat timeout plus RESTART_GRACE_S to beat
    again (their gRPC reconnect backoff), then the usual timeout applies."""
    from emberfs.metaserver.mgmt.manager import RESTART_GRACE_S

    clock = Clock()

    async def first() -> None:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=clock)
            await _three_nodes(manager)
            await manager.init_chains(3)

    async def second() -> None:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=clock)
            clock.now += config.heartbeat_timeout_s + RESTART_GRACE_S - 0.1
            await manager.tick()
            assert manager.state.alive == {1, 2, 3}
            await manager.heartbeat(1, [Report(101, UP)])
            clock.now += 0.2 + config.heartbeat_timeout_s / 2
            await manager.tick()
            assert manager.state.alive == {1}

    asyncio.run(first())
    asyncio.run(second())


def test_heartbeat_rules_and_routing_versions(config: MetaConfig) -> None:
    clock = Clock()

    async def body() -> None:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=clock, wall=lambda: 5000.0)
            assert await manager.heartbeat(1, []) == (0, True)  # unknown: re-register
            await _three_nodes(manager)
            await manager.init_chains(3)
            v = manager.state.routing_version
            assert manager.routing(v).unchanged
            routing = manager.routing(0).routing
            assert routing.routing_version == v and [n.alive for n in routing.nodes] == [True] * 3
            assert routing.nodes[0].last_heartbeat_ms == 5_000_000
            assert [t.public_state for t in routing.targets] == [PublicState.SERVING] * 3
            # Stats and an unchanged state: no bump, no chain change.
            assert (await manager.heartbeat(2, [Report(201, ON)]))[0] == v
            assert await manager.register(_reg(2)) == v  # the same data again
            # Node 3 goes silent past the timeout: dead, its target OFFLINE, one bump.
            for _ in range(3):
                clock.now += 1.0
                await manager.heartbeat(1, [Report(101, UP)])
                await manager.heartbeat(2, [Report(201, UP)])
                await manager.tick()
            state = manager.state
            assert state.alive == {1, 2}
            assert state.chains[1].state_of(301) == PublicState.OFFLINE
            assert state.routing_version == v + 1
            routing = manager.routing(v).routing
            dead = [t for t in routing.targets if t.target_id == 301][0]
            assert dead.local_state == 3 and dead.public_state == PublicState.OFFLINE
            # It returns: alive, and its target rejoins by syncing.
            await manager.heartbeat(3, [Report(301, ON)])
            assert manager.state.chains[1].state_of(301) == PublicState.SYNCING
            assert manager.state.routing_version == v + 3  # alive (+1), chain moved (+1)

    asyncio.run(body())


def test_transitions_are_logged(config: MetaConfig, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=Clock())
            await _three_nodes(manager)
            await manager.init_chains(3)
            with caplog.at_level(logging.INFO, logger="emberfs.metaserver.mgmt"):
                await manager.set_admin_state(201, True)
            assert "chain 1 v2: target 201 SERVING -> OFFLINE" in caplog.text

    asyncio.run(body())


def _create(store: MetaStore, path: str, stripe: int = 0) -> meta_pb2.Inode:
    return store.write_sync(
        lambda tx: create.create(tx, ROOT, split_path(path), mode=0o644, stripe=stripe)
    ).inode


def test_new_files_get_chains_from_the_table(config: MetaConfig) -> None:
    async def body() -> None:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=Clock())
            store.allocator = manager.allocator
            assert list(_create(store, "/before").layout.chain_ids) == []
            await _three_nodes(manager, k=2)
            await manager.init_chains(3)
            assert sorted(manager.state.chains) == [1, 2]
            seen = set()
            for i in range(6):
                inode = _create(store, f"/f{i}", stripe=2)
                ids = list(inode.layout.chain_ids)
                assert sorted(ids) == [1, 2]
                seen.add(ids[0])
            assert seen == {1, 2}  # consecutive inodes start on different chains
            few = _create(store, "/wide", stripe=8)
            assert sorted(few.layout.chain_ids) == [1, 2]  # capped at the chains that exist

    asyncio.run(body())


class FakeRemover:
    """Answers RemoveChunks from a table; records every call."""

    def __init__(self) -> None:
        self.calls: list[Removal] = []
        self.down: set[str] = set()
        self.closed = False

    async def remove_chunks(self, removal: Removal) -> int:
        self.calls.append(removal)
        if removal.address in self.down:
            raise Unavailable(f"{removal.address} is down")
        return 1

    async def close(self) -> None:
        self.closed = True


def test_gc_calls_every_target_and_keeps_records_until_all_answer(config: MetaConfig) -> None:
    async def body() -> None:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=Clock())
            store.allocator = manager.allocator
            await _three_nodes(manager, k=2)
            await manager.init_chains(3)
            remover = FakeRemover()
            collector = ChunkCollector(store, lambda: manager.state, remover, interval_s=0.01)
            inode = _create(store, "/doomed", stripe=2)
            store.write_sync(lambda tx: remove.remove(tx, ROOT, ["doomed"], kind=meta_pb2.NON_DIRECTORY))
            gc = lambda: [r.inode_id for r in store.read(lambda tx: list(tx.gc_records()))]  # noqa: E731
            assert gc() == [inode.inode_id]

            remover.down = {"127.0.0.1:7002"}
            assert await collector.collect_once() == []
            assert gc() == [inode.inode_id]  # node 2 did not answer: kept
            called = {(c.chain_id, c.target_id) for c in remover.calls}
            expected = {(cid, t.target_id) for cid, ch in manager.state.chains.items() for t in ch.targets}
            assert called == expected and len(called) == 6
            for call in remover.calls:
                assert call.inode_id == inode.inode_id
                assert call.chain_version == manager.state.chains[call.chain_id].chain_version
                assert call.address == f"127.0.0.1:{7000 + call.target_id // 100}"

            remover.down = set()
            assert await collector.collect_once() == [inode.inode_id]
            assert gc() == []
            await collector.stop()
            assert remover.closed

    asyncio.run(body())


def test_gc_counts_chains_that_no_longer_exist_as_done(config: MetaConfig, fixed_chains_store: Any) -> None:
    store = fixed_chains_store

    async def body() -> None:
        manager = ClusterManager(store, config, monotonic=Clock())  # no chains at all
        remover = FakeRemover()
        collector = ChunkCollector(store, lambda: manager.state, remover, interval_s=0.01, batch=2)
        for i in range(5):
            _create(store, f"/g{i}")
            store.write_sync(lambda tx, i=i: remove.remove(tx, ROOT, [f"g{i}"], kind=meta_pb2.NON_DIRECTORY))
        assert len(store.read(lambda tx: list(tx.gc_records()))) == 5
        done: list[int] = []
        for _ in range(4):  # batches of two
            done += await collector.collect_once()
        assert len(done) == 5 and remover.calls == []
        assert store.read(lambda tx: list(tx.gc_records())) == []

    asyncio.run(body())


class _FixedChains:
    refresh_keys: tuple[tuple[str, bytes], ...] = ()

    def refresh(self, kv: Any) -> None:
        pass

    def pick(self, stripe: int, inode_id: int) -> list[int]:
        return list(range(1, stripe + 1))


@pytest.fixture
def fixed_chains_store(config: MetaConfig) -> Any:
    with MetaStore(config, allocator=_FixedChains()) as store:
        yield store
