"""Simulated storage nodes for the cluster-manager simulation (bench/mgmtsim.py).

One worker process runs a slice of the nodes on one asyncio loop and one gRPC
channel. A node behaves as storage/agent.py does towards the manager: RegisterNode
(retried with the agent's backoff), then a Heartbeat every interval after the
previous one finished, carrying its targets' local states and the routing version it
holds; a reply naming a newer version makes it fetch GetRouting (single-flight per
node; a delta from the version it holds, as the agent asks), a `reregister` reply
registers it again. Local states follow the agent's rule
(storage/localstate.py): SERVING -> UPTODATE, SYNCING -> UPTODATE (the simulated
resync is instant), anything else ONLINE.

The nodes must cost the machine little, since they share it with the manager they
measure: requests are serialized once per (node, local states) and the routing
version is appended as raw protobuf bytes (concatenated messages merge); GetRouting
replies are kept as bytes, their version read from the first bytes, and parsed into
target states at most once per version per process.

The worker hears the orchestrator on one pipe and answers on another, with tuples:
("register",) -> ("progress", n)... ("registered", n); ("chains",) tells the nodes
that chains exist (before that every target is ONLINE and no routing is parsed);
("silence", ids, on); ("mark",) -> ("stats", Stats); ("stop",) -> ("stats", Stats).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import grpc

from emberfs.common.chainstate import PublicState
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, mgmt_pb2
from emberfs.storage.agent import backoff_delays

__all__ = ["Stats", "routing_version_of", "run_worker"]

MGMT_TIMEOUT_S = 5.0
UP = (PublicState.SERVING, PublicState.SYNCING)
CAPACITY = 1 << 40


@dataclass
class Stats:
    """What a worker measured since the last mark (latencies in seconds)."""

    latencies: list[float] = field(default_factory=list)
    beat_errors: int = 0
    reregisters: int = 0
    routing_fetches: int = 0
    routing_bytes: int = 0
    max_routing_bytes: int = 0
    cpu_s: float = 0.0


def routing_version_of(reply: bytes) -> int | None:
    """routing.routing_version of a serialized GetRoutingResponse, read from its first
    bytes (field 2, then field 1 inside); None when the layout is not that."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        for _ in range(10):
            byte = reply[at]
            value |= (byte & 0x7F) << shift
            at += 1
            if byte < 0x80:
                return value, at
            shift += 7
        raise ValueError("varint too long")

    try:
        at = 0
        if reply[:1] == b"\x08":  # unchanged = true
            return None
        if reply[at] != 0x12:
            return None
        _, at = varint(at + 1)
        if reply[at] != 0x08:
            return None
        return varint(at + 1)[0]
    except (IndexError, ValueError):
        return None


def _identity(data: bytes) -> bytes:
    return data


class _Routing:
    """The newest routing this process parsed: target id -> public state. Its nodes
    hold different versions, so a delta is merged chain by chain (a chain's record
    replaces the one held when its chain version is newer) rather than applied to one
    version as storage/agent.py does."""

    def __init__(self) -> None:
        self.version = 0
        self.states: dict[int, PublicState] = {}
        self.chain_versions: dict[int, int] = {}
        self.chain_of: dict[int, int] = {}  # target id -> chain id

    def learn(self, version: int, reply: bytes) -> None:
        if version <= self.version:
            return
        info = mgmt_pb2.GetRoutingResponse.FromString(reply).routing
        self.states = {t.target_id: PublicState(t.public_state) for c in info.chains for t in c.targets}
        self.chain_versions = {c.chain_id: c.chain_version for c in info.chains}
        self.chain_of = {t.target_id: c.chain_id for c in info.chains for t in c.targets}
        self.version = version

    def merge(self, delta: mgmt_pb2.RoutingDelta) -> None:
        for chain in delta.chains:
            if chain.chain_version > self.chain_versions.get(chain.chain_id, -1):
                self.chain_versions[chain.chain_id] = chain.chain_version
                self.states.update((t.target_id, PublicState(t.public_state)) for t in chain.targets)
                self.chain_of.update((t.target_id, chain.chain_id) for t in chain.targets)
        self.version = max(self.version, delta.routing_version)


class _Node:
    def __init__(self, node_id: int, targets: int, sim: _Worker) -> None:
        self.node_id = node_id
        self.target_ids = tuple(node_id * 100 + k for k in range(1, targets + 1))
        self.sim = sim
        self.incarnation = random.getrandbits(63) or 1
        self.version = 0  # the routing version this node holds
        self.silent = False
        self.registered = False
        self._states: tuple[tuple[int, int], ...] = ()
        self._static = b""  # HeartbeatRequest without routing_version
        self._fetch: asyncio.Task[None] | None = None

    def _reports(self) -> list[mgmt_pb2.TargetReport]:
        return [mgmt_pb2.TargetReport(target_id=t, local_state=s, capacity_bytes=CAPACITY,  # type: ignore[arg-type]
                                      chain_version=v)
                for t, (s, v) in zip(self.target_ids, self._local_states(), strict=True)]

    def _local_states(self) -> tuple[tuple[int, int], ...]:
        """(local state, the chain version it was judged at) of each target."""
        if not self.sim.chains:
            return ((mgmt_pb2.LOCAL_ONLINE, 0),) * len(self.target_ids)
        routing = self.sim.routing
        states, chain_of, versions = routing.states, routing.chain_of, routing.chain_versions
        return tuple((mgmt_pb2.LOCAL_UPTODATE if states.get(t) in UP else mgmt_pb2.LOCAL_ONLINE,
                      versions.get(chain_of.get(t, 0), 0))
                     for t in self.target_ids)

    def beat_request(self) -> bytes:
        states = self._local_states()
        if states != self._states:
            self._states = states
            self._static = mgmt_pb2.HeartbeatRequest(
                header=common_pb2.RequestHeader(), node_id=self.node_id, targets=self._reports(),
                incarnation=self.incarnation).SerializeToString()
        return self._static + mgmt_pb2.HeartbeatRequest(routing_version=self.version).SerializeToString()

    async def register(self) -> None:
        for delay in backoff_delays():
            request = mgmt_pb2.RegisterNodeRequest(
                header=common_pb2.RequestHeader(), node_id=self.node_id,
                address=f"127.0.0.1:{20000 + self.node_id % 40000}", targets=self._reports(),
                incarnation=self.incarnation)
            try:
                reply = await self.sim.register_call(request, timeout=MGMT_TIMEOUT_S)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(delay)
                continue
            self.sim.interval_s = reply.heartbeat_interval_s or self.sim.interval_s
            self.registered = True
            self.refresh(reply.routing_version)
            return

    def refresh(self, version: int) -> None:
        if version > self.version and (self._fetch is None or self._fetch.done()):
            self._fetch = asyncio.get_running_loop().create_task(self._get_routing())

    async def _get_routing(self) -> None:
        request = mgmt_pb2.GetRoutingRequest(header=common_pb2.RequestHeader(), known_version=self.version,
                                             accept_delta=True)
        try:
            reply = await self.sim.routing_call(request.SerializeToString(), timeout=MGMT_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return
        stats = self.sim.stats
        stats.routing_fetches += 1
        stats.routing_bytes += len(reply)
        stats.max_routing_bytes = max(stats.max_routing_bytes, len(reply))
        version = routing_version_of(reply)
        if version is None and reply[:1] == b"\x1a":  # a delta (field 3): small, parsed whole
            delta = mgmt_pb2.GetRoutingResponse.FromString(reply).delta
            version = delta.routing_version
            if self.sim.chains:
                self.sim.routing.merge(delta)
        elif version is not None and version > self.version and self.sim.chains:
            self.sim.routing.learn(version, reply)
        if version is not None and version > self.version:
            self.version = version

    async def run(self) -> None:
        await self.register()
        while not self.sim.stopping:
            await asyncio.sleep(self.sim.interval_s)
            if self.silent:
                continue
            sent = time.perf_counter()
            try:
                reply = await self.sim.beat_call(self.beat_request(), timeout=max(1.0, 2 * self.sim.interval_s))
            except grpc.aio.AioRpcError:
                self.sim.stats.beat_errors += 1
                continue
            self.sim.stats.latencies.append(time.perf_counter() - sent)
            if reply.reregister:
                self.sim.stats.reregisters += 1
                await self.register()
            else:
                self.refresh(reply.routing_version)


class _Worker:
    def __init__(self, meta: str, node_ids: list[int], targets: int) -> None:
        self.channel = grpc.aio.insecure_channel(meta, options=channel_options())
        self.register_call = self.channel.unary_unary(
            "/emberfs.Mgmt/RegisterNode", request_serializer=mgmt_pb2.RegisterNodeRequest.SerializeToString,
            response_deserializer=mgmt_pb2.RegisterNodeResponse.FromString)
        self.beat_call = self.channel.unary_unary(
            "/emberfs.Mgmt/Heartbeat", request_serializer=_identity,
            response_deserializer=mgmt_pb2.HeartbeatResponse.FromString)
        self.routing_call = self.channel.unary_unary(
            "/emberfs.Mgmt/GetRouting", request_serializer=_identity, response_deserializer=_identity)
        self.nodes = {n: _Node(n, targets, self) for n in node_ids}
        self.interval_s = 1.0
        self.chains = False
        self.stopping = False
        self.routing = _Routing()
        self.stats = Stats()
        self._cpu_mark = _cpu()

    def take_stats(self) -> Stats:
        stats, self.stats = self.stats, Stats()
        now = _cpu()
        stats.cpu_s, self._cpu_mark = now - self._cpu_mark, now
        return stats


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def _serve(inbox_conn: Connection, conn: Connection, meta: str, node_ids: list[int], targets: int) -> None:
    sim = _Worker(meta, node_ids, targets)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()
    # Commands and replies on two pipes: add_reader makes its fd non-blocking, and a
    # large reply (the latencies) on a non-blocking pipe fails with EAGAIN.
    loop.add_reader(inbox_conn.fileno(), lambda: inbox.put_nowait(inbox_conn.recv()))
    tasks: list[asyncio.Task[None]] = []
    try:
        while True:
            command = await inbox.get()
            kind = command[0]
            if kind == "register":
                tasks = [loop.create_task(node.run()) for node in sim.nodes.values()]
                loop.create_task(_report_registration(conn, sim))
            elif kind == "chains":
                sim.chains = True
                for node in sim.nodes.values():
                    node.version = min(node.version, 0)  # refetch: states come from routing now
            elif kind == "silence":
                ids, on = command[1], command[2]
                for node_id in ids:  # type: ignore[attr-defined]
                    if node_id in sim.nodes:  # every worker hears every id
                        sim.nodes[node_id].silent = bool(on)
            elif kind == "mark":
                conn.send(("stats", sim.take_stats()))
            elif kind == "stop":
                sim.stopping = True
                conn.send(("stats", sim.take_stats()))
                return
    finally:
        loop.remove_reader(inbox_conn.fileno())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await task
        await sim.channel.close()


async def _report_registration(conn: Connection, sim: _Worker) -> None:
    """Progress once a second until every node of this worker is registered (bounded:
    the orchestrator gives up on registration after its own deadline and stops us)."""
    while not sim.stopping:
        done = sum(node.registered for node in sim.nodes.values())
        if done == len(sim.nodes):
            conn.send(("registered", done))
            return
        conn.send(("progress", done))
        await asyncio.sleep(1.0)


def run_worker(inbox: Connection, outbox: Connection, meta: str, node_ids: list[int], targets: int) -> None:
    """The entry point of a worker process: commands on `inbox`, replies on `outbox`."""
    try:
        import uvloop  # the simulator's own overhead matters here
    except ImportError:
        asyncio.run(_serve(inbox, outbox, meta, node_ids, targets))
    else:
        uvloop.run(_serve(inbox, outbox, meta, node_ids, targets))
