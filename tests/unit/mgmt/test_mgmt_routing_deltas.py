"""Routing by deltas and group-committed decisions, on a ClusterManager over a real
LMDB store with a hand-driven clock.

- A view of any earlier version, moved on by the delta the manager answers, equals the
  whole table fetched at the same moment, through random heartbeats, deaths, returns,
  restarts and admin changes (several seeds).
- GetRouting and the replies show only durable decisions: while a decision's write is
  held back, the routing version others see does not move.
- A failed write makes the manager refuse work until its tick has reloaded the state.
"""

from __future__ import annotations

import asyncio
import pathlib
import random
from collections.abc import Callable
from typing import Any

import pytest

from emberfs.common.chainstate import LocalState
from emberfs.common.errors import Unavailable
from emberfs.common.routing import RoutingView, next_view
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.mgmt import manager as manager_module
from emberfs.metaserver.mgmt.manager import ClusterManager
from emberfs.metaserver.mgmt.state import Registration, Report
from emberfs.metaserver.store import MetaStore
from emberfs.metaserver.txn import MetaTxn
from emberfs.proto import mgmt_pb2

ON, UP = int(LocalState.ONLINE), int(LocalState.UPTODATE)
NODES, TARGETS = 6, 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def config(tmp_path: pathlib.Path) -> MetaConfig:
    return MetaConfig(data_dir=str(tmp_path / "meta"), default_chunk_size=1 << 20, default_stripe=2,
                      heartbeat_interval_s=0.5, heartbeat_timeout_s=2.0)


def _reg(node_id: int, incarnation: int = 0) -> Registration:
    return Registration(node_id, f"127.0.0.1:{7000 + node_id}",
                        tuple(Report(node_id * 100 + k, ON) for k in range(1, TARGETS + 1)), incarnation=incarnation)


def _published(view: RoutingView, unversioned: bool = True) -> dict[str, Any]:
    """What a view says, heartbeat times left out (they move without a version), and
    local states and stats too unless `unversioned`."""
    return {
        "version": view.version,
        "nodes": {n: (i.address, i.bulk_address, i.alive) for n, i in view.nodes.items()},
        "targets": {t: (i.node_id, i.chain_id, i.public_state) + ((i.local_state, i.capacity_bytes) if unversioned
                                                                   else ()) for t, i in view.targets.items()},
        "chains": {c: i.SerializeToString() for c, i in view.chain_infos.items()},
    }


def _reports(view: RoutingView, node_id: int, rng: random.Random) -> list[Report]:
    """What a node would say: UPTODATE for a target its view shows SERVING or SYNCING
    (a resync that finished at once), at the chain version of that view; sometimes ONLINE."""
    out = []
    for k in range(1, TARGETS + 1):
        target_id = node_id * 100 + k
        info = view.targets.get(target_id)
        chain = view.chains.get(info.chain_id) if info is not None else None
        state = chain.state_of(target_id) if chain is not None else None
        up = state is not None and state.name in ("SERVING", "SYNCING") and rng.random() > 0.1
        out.append(Report(target_id, UP if up else ON, chain_version=chain.chain_version if chain else 0))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_a_delta_from_any_earlier_view_gives_the_whole_table(config: MetaConfig, seed: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "DELTA_MAX_SHARE", 2.0)  # deltas however much moved: test them
    rng = random.Random(seed)
    clock = Clock()

    async def body() -> None:
        with MetaStore(config) as store:
            manager = ClusterManager(store, config, monotonic=clock)
            incarnations = dict.fromkeys(range(1, NODES + 1), 1)
            for node_id in incarnations:
                await manager.register(_reg(node_id, 1))
            await manager.init_chains(3)
            views = [RoutingView(manager.routing(0).routing)]
            silent: set[int] = set()
            deltas = 0
            for _ in range(80):
                event = rng.random()
                node_id = rng.randint(1, NODES)
                if event < 0.1:
                    silent ^= {node_id}  # goes quiet, or speaks again
                elif event < 0.15:
                    incarnations[node_id] += 1  # restarted
                    await manager.register(_reg(node_id, incarnations[node_id]))
                elif event < 0.2:
                    await manager.set_admin_state(node_id * 100 + 1, rng.random() < 0.5)
                clock.now += rng.choice((0.2, 0.5, 1.0))
                for beating in sorted(set(incarnations) - silent):
                    await manager.heartbeat(beating, _reports(views[-1], beating, rng), incarnations[beating],
                                            views[-1].version)
                await manager.tick()
                whole = RoutingView(manager.routing(0).routing)
                for old in rng.sample(views, min(4, len(views))):
                    reply = manager.routing(old.version, accept_delta=True)
                    deltas += reply.HasField("delta")
                    moved = next_view(old, reply)
                    assert moved is not None, f"a delta from {old.version} did not apply"
                    # At the current version the answer is "unchanged", though local states
                    # may have moved since (they go with the next version).
                    current = old.version == whole.version
                    assert _published(moved, not current) == _published(whole, not current), \
                        f"from version {old.version}"
                views.append(whole)
            assert deltas > 150  # the comparisons above were of deltas, mostly

    asyncio.run(body())


class HeldWrites:
    """The real store, with its writes held back while `held` is clear (or failing)."""

    def __init__(self, store: MetaStore) -> None:
        self._store = store
        self.open = asyncio.Event()
        self.open.set()
        self.fail: Exception | None = None
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write(self, fn: Callable[[MetaTxn], Any]) -> Any:
        await self.open.wait()
        if self.fail is not None:
            raise self.fail
        self.writes += 1
        return await self._store.write(fn)


def test_others_see_a_decision_only_once_it_is_durable(config: MetaConfig) -> None:
    clock = Clock()

    async def body() -> None:
        with MetaStore(config) as real:
            store = HeldWrites(real)
            manager = ClusterManager(store, config, monotonic=clock)  # type: ignore[arg-type]
            for node_id in (1, 2, 3):
                await manager.register(_reg(node_id))
            await manager.init_chains(3)
            v = manager.state.routing_version
            store.open.clear()
            writes = store.writes
            # Node 4 registers: a bump, decided at once, not yet written.
            joining = asyncio.create_task(manager.register(_reg(4)))
            await asyncio.sleep(0.05)
            assert manager.state.routing_version == v + 1 and not joining.done()
            assert manager.routing(v).unchanged  # nobody sees it yet
            assert (await manager.heartbeat(1, [Report(101, ON)]))[0] == v  # nothing new: no wait
            # Two more decisions queue behind that write (nodes 5 and 6): one write takes both.
            more = [asyncio.create_task(manager.register(_reg(n))) for n in (5, 6)]
            await asyncio.sleep(0.05)
            store.open.set()
            assert await joining == v + 1
            assert await asyncio.gather(*more) == [v + 3, v + 3]
            assert store.writes == writes + 2
            routing = manager.routing(v, accept_delta=True)
            assert routing.delta.routing_version == v + 3
            assert sorted(n.node_id for n in routing.delta.nodes) == [4, 5, 6]

    asyncio.run(body())


def test_a_failed_write_is_refused_and_the_tick_reloads_the_state(config: MetaConfig) -> None:
    clock = Clock()

    async def body() -> None:
        with MetaStore(config) as real:
            store = HeldWrites(real)
            manager = ClusterManager(store, config, monotonic=clock)  # type: ignore[arg-type]
            for node_id in (1, 2, 3):
                await manager.register(_reg(node_id))
            v = manager.state.routing_version
            store.fail = OSError(28, "No space left on device")
            with pytest.raises(OSError, match="No space"):
                await manager.register(_reg(4))
            assert manager.state.routing_version == v + 1  # memory went ahead of the store...
            with pytest.raises(Unavailable, match="reloading"):
                await manager.heartbeat(1, [Report(101, ON)])
            store.fail = None
            await manager.tick()  # ...until the tick reloads it
            assert manager.state.routing_version == v and 4 not in manager.state.nodes
            assert manager.routing(0).routing.routing_version == v
            assert await manager.register(_reg(4)) == v + 1

    asyncio.run(body())


def test_a_delta_is_refused_by_a_view_it_does_not_start_from() -> None:
    member = mgmt_pb2.ChainTarget(target_id=101, public_state=mgmt_pb2.SERVING)
    chain = mgmt_pb2.ChainInfo(chain_id=1, chain_version=5, targets=[member])
    view = RoutingView(mgmt_pb2.RoutingInfo(routing_version=7, chains=[chain]))
    later = mgmt_pb2.RoutingDelta(from_version=7, routing_version=9,
                                  chains=[mgmt_pb2.ChainInfo(chain_id=1, chain_version=6)])
    assert view.apply(later) is not None
    assert view.apply(mgmt_pb2.RoutingDelta(from_version=6, routing_version=9)) is None  # not from 7
    back = mgmt_pb2.RoutingDelta(from_version=7, routing_version=9,
                                 chains=[mgmt_pb2.ChainInfo(chain_id=1, chain_version=4)])
    assert view.apply(back) is None  # a chain's version never goes back
    gone = view.apply(mgmt_pb2.RoutingDelta(from_version=7, routing_version=8, removed_chains=[1]))
    assert gone is not None and gone.chains == {} and gone.proto.routing_version == 8
    assert next_view(view, mgmt_pb2.GetRoutingResponse(delta=mgmt_pb2.RoutingDelta(
        from_version=5, routing_version=6))) is view  # older than the view: kept
