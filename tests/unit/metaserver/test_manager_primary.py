"""The manager-primary rules (mgmt/primary.py, mgmt/manager.py) over the etcd engine's
model: two ClusterManagers share one namespace store as two metaservers would; the
primary record decides which one manages, the term clock decides when it may answer,
and the fence keeps a deposed primary's writes out of the store (issue 19)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from emberfs.common.errors import InvalidArgument, NotPrimary
from emberfs.common.chainstate import LocalState
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.etcdkv.store import EtcdStore
from emberfs.metaserver.mgmt import table
from emberfs.metaserver.mgmt.manager import ClusterManager
from emberfs.metaserver.mgmt.primary import (
    CLOCK_MARGIN, PRIMARY_KEY, PRIMARY_TABLE, Term, check_record, term_after,
)
from emberfs.metaserver.mgmt.state import Registration, Report
from emberfs.metaserver.ops import create
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.txn import MetaTxn

ON = int(LocalState.ONLINE)


@pytest.mark.parametrize(("sent_at", "ttl", "now", "holds"), [
    (100.0, 2, 100.0, True),
    (100.0, 2, 101.0, True),
    (100.0, 2, 100.0 + 2 * (1 - CLOCK_MARGIN) - 1e-6, True),
    (100.0, 2, 100.0 + 2 * (1 - CLOCK_MARGIN), False),  # ends before etcd can expire it
    (100.0, 2, 102.0, False),
    (100.0, 0, 100.0, False),  # etcd said expired: no term at all
    (100.0, -1, 99.0, False),
])
def test_a_term_runs_from_the_send_time_and_ends_early(sent_at: float, ttl: int, now: float, holds: bool) -> None:
    term = term_after(7, sent_at, ttl)
    assert term.lease_id == 7
    assert term.holds(now) is holds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordGate:
    """The election's gate minus etcd's lease: holds while `until` is ahead of the clock;
    its fence is the production check of the primary record."""

    def __init__(self, name: str) -> None:
        self.identity = f"{name} {name}-token".encode()
        self.until = 0.0

    def holds(self, now: float) -> bool:
        return now < self.until

    def fence(self, tx: MetaTxn) -> None:
        check_record(tx, self.identity)

    @property
    def primary_hint(self) -> str:
        return "elsewhere"


def _elect(store: EtcdStore, gate: RecordGate, clock: Clock) -> None:
    store.write_sync(lambda tx: tx.kv.put(PRIMARY_TABLE, PRIMARY_KEY, gate.identity))
    gate.until = clock.now + 10


def _reg(node_id: int) -> Registration:
    return Registration(node_id, f"127.0.0.1:{7000 + node_id}", (Report(node_id * 100 + 1, ON),))


@pytest.fixture
def pair(memory_etcd: Any) -> Any:
    config = MetaConfig(data_dir="", engine="etcd", etcd_endpoints=("127.0.0.1:2379",),
                        heartbeat_interval_s=0.5, heartbeat_timeout_s=4.0)
    etcd = memory_etcd()
    stores = [EtcdStore(config, etcd, max_ops=100_000) for _ in range(2)]
    yield config, stores
    for store in stores:
        store._closed.set()  # the shared model is closed once, below
        store._pool.shutdown()
    etcd.close()


def test_only_the_elected_primary_manages_and_a_standby_takes_over_its_state(pair: Any) -> None:
    config, (store_a, store_b) = pair
    clock = Clock()
    gate_a, gate_b = RecordGate("a"), RecordGate("b")

    async def scenario() -> None:
        a = ClusterManager(store_a, config, monotonic=clock, gate=gate_a)
        b = ClusterManager(store_b, config, monotonic=clock, gate=gate_b)
        for manager in (a, b):  # nobody elected yet: both refuse
            with pytest.raises(NotPrimary, match="not the cluster manager primary"):
                await manager.register(_reg(1))
        _elect(store_a, gate_a, clock)
        await a.promote()
        for n in (1, 2, 3):
            await a.register(_reg(n))
        chains, created = await a.init_chains(3)
        assert created
        for call in (lambda: b.register(_reg(4)), lambda: b.heartbeat(1, []), lambda: b.init_chains(3),
                     lambda: b.set_admin_state(101, True)):
            with pytest.raises(NotPrimary):
                await call()
        with pytest.raises(NotPrimary):
            b.routing(0)
        # A create on the standby right after InitChains (before any refresh of its view)
        # places the file on the stored chains: the create reads the chain set itself.
        store_b.allocator = b.allocator
        made = store_b.write_sync(lambda tx: create.create(tx, ROOT, ["f"], mode=0o644, exclusive=True))
        assert list(made.inode.layout.chain_ids) == [c.chain_id for c in chains]
        await b.tick()  # a standby's tick refreshes its view from the store
        assert b.state.routing_version == a.state.routing_version
        assert b.allocator.chain_ids == tuple(c.chain_id for c in chains)

        # a dies (its term lapses); b is elected and manages what a stored.
        clock.now += 10
        _elect(store_b, gate_b, clock)
        await b.promote()
        assert set(b.state.nodes) == {1, 2, 3} and b.state.chains.keys() == a.state.chains.keys()
        clock.now += 1  # within the grace: nobody is declared dead at takeover
        await b.tick()
        assert b.state.alive == {1, 2, 3}
        version, reregister = await b.heartbeat(2, [Report(201, ON)], 0, b.state.routing_version)
        assert not reregister and version == b.state.routing_version

    asyncio.run(scenario())


def test_a_deposed_primary_cannot_write_and_steps_down(pair: Any) -> None:
    config, (store_a, store_b) = pair
    clock = Clock()
    gate_a, gate_b = RecordGate("a"), RecordGate("b")

    async def scenario() -> None:
        a = ClusterManager(store_a, config, monotonic=clock, gate=gate_a)
        _elect(store_a, gate_a, clock)
        await a.promote()
        await a.register(_reg(1))
        # b is elected while a still believes in its term (a frozen process, say).
        _elect(store_b, gate_b, clock)
        with pytest.raises(NotPrimary, match="no longer the cluster manager primary"):
            await a.register(_reg(2))  # the write's fence fails inside the transaction
        assert not a.is_primary
        stored = store_b.read(table.load)
        assert set(stored.nodes) == {1}, "a fenced write must not reach the store"
        with pytest.raises(NotPrimary):
            await a.heartbeat(1, [Report(101, ON)])

    asyncio.run(scenario())


def test_a_primary_whose_term_ran_out_answers_no_heartbeat(pair: Any) -> None:
    """The record still names it (etcd has not expired the lease yet), but its own term
    is over: a heartbeat reply would renew a storage lease it can no longer vouch for."""
    config, (store_a, _) = pair
    clock = Clock()
    gate_a = RecordGate("a")

    async def scenario() -> None:
        a = ClusterManager(store_a, config, monotonic=clock, gate=gate_a)
        _elect(store_a, gate_a, clock)
        await a.promote()
        await a.register(_reg(1))
        clock.now = gate_a.until
        with pytest.raises(NotPrimary):
            await a.heartbeat(1, [Report(101, ON)])
        with pytest.raises(NotPrimary):
            a.routing(0)
        before = store_a.read(table.load)
        await a.tick()  # the tick task writes nothing either
        assert store_a.read(table.load) == before

    asyncio.run(scenario())


def test_the_fence_names_the_primary_it_found(pair: Any) -> None:
    _, (store, _) = pair
    with pytest.raises(NotPrimary, match="unknown"):
        store.read(lambda tx: check_record(tx, b"me x"))
    store.write_sync(lambda tx: tx.kv.put(PRIMARY_TABLE, PRIMARY_KEY, b"10.0.0.9:9000 tok"))
    with pytest.raises(NotPrimary, match="10.0.0.9:9000"):
        store.read(lambda tx: check_record(tx, b"me x"))
    store.read(lambda tx: check_record(tx, b"10.0.0.9:9000 tok"))


@pytest.mark.parametrize(("lease", "interval", "timeout", "ok"), [
    (2, 1.0, 5.0, True),   # the defaults
    (2, 1.0, 4.0, True),
    (2, 1.0, 3.9, False),  # a takeover could outlast a live storage server's lease
    (1, 0.5, 2.5, True),
    (0, 0.5, 5.0, False),
    (61, 1.0, 100.0, False),
])
def test_storage_leases_must_outlast_a_takeover(lease: int, interval: float, timeout: float, ok: bool) -> None:
    def make() -> MetaConfig:
        return MetaConfig(data_dir="", engine="etcd", etcd_endpoints=("127.0.0.1:2379",), manager_lease_s=lease,
                          heartbeat_interval_s=interval, heartbeat_timeout_s=timeout)

    if ok:
        assert make().manager_lease_s == lease
    else:
        with pytest.raises(InvalidArgument):
            make()


def test_term_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Term(1, 2.0).until = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(("advertise", "ok"), [
    (None, True), ("meta1:9000", True), ("10.0.0.5:9000", True),
    ("0.0.0.0:9000", False), ("meta1:0", False), ("meta1", False),
])
def test_a_metaserver_advertises_a_dialable_address(advertise: str | None, ok: bool) -> None:
    def make() -> MetaConfig:
        return MetaConfig(data_dir="", engine="etcd", etcd_endpoints=("127.0.0.1:2379",), listen="0.0.0.0:9000",
                          advertise=advertise)

    if ok:
        assert make().advertise == advertise
    else:
        with pytest.raises(InvalidArgument):
            make()
