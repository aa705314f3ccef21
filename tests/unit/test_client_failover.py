"""Failover between metaserver addresses: the client's transport and a storage server's
link to the manager, against scripted in-process gRPC peers (real gRPC, fake logic; the
real processes are in tests/integration/test_meta_addresses.py).

Checked here: the same request (same request id) goes to the next address at once when
one is away (UNAVAILABLE, NotPrimary for manager calls, an attempt's deadline), answers
never move, each kind of call sticks to the address that answered, whole rounds back
off under the retry policy, and `wait_ready` is ready when any address connects.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc
import pytest

from emberfs.client import RetryPolicy
from emberfs.client._meta import Identity, MetaTransport
from emberfs.common import errors as e
from emberfs.proto import meta_pb2, meta_pb2_grpc, mgmt_pb2, mgmt_pb2_grpc
from emberfs.storage.managerlink import ManagerLink

pytestmark = pytest.mark.timeout(30)

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, attempt_timeout=0.3)
ME = Identity(uid=1000, gid=100, groups=(100,))


class Peer(meta_pb2_grpc.MetaServicer, mgmt_pb2_grpc.MgmtServicer):
    """Answers Stat, GetRouting and Heartbeat as `behaviour` says: "ok", "hang", or an
    error to fail with; records every request."""

    def __init__(self, behaviour: str | e.EmberError = "ok") -> None:
        self.behaviour = behaviour
        self.requests: list = []
        self.address = ""

    async def _answer(self, request, context, reply):
        self.requests.append(request)
        if self.behaviour == "hang":
            await asyncio.sleep(5)
        elif isinstance(self.behaviour, e.EmberError):
            context.set_trailing_metadata(((e.ERROR_METADATA_KEY, self.behaviour.code),))
            await context.abort(self.behaviour.grpc_status, self.behaviour.message)
        return reply

    async def Stat(self, request, context):
        return await self._answer(request, context, meta_pb2.StatResponse(inode=meta_pb2.Inode(inode_id=1)))

    async def GetRouting(self, request, context):
        return await self._answer(request, context, mgmt_pb2.GetRoutingResponse(unchanged=True))

    async def Heartbeat(self, request, context):
        return await self._answer(request, context, mgmt_pb2.HeartbeatResponse(routing_version=7))


def _dead_address() -> str:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def _serve(peers: list[Peer]) -> list[grpc.aio.Server]:
    servers = []
    for peer in peers:
        server = grpc.aio.server()
        meta_pb2_grpc.add_MetaServicer_to_server(peer, server)
        mgmt_pb2_grpc.add_MgmtServicer_to_server(peer, server)
        peer.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        servers.append(server)
    return servers


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


async def _transport(addresses: list[str], sleeps: Sleeps, *, first: str | None = None) -> MetaTransport:
    """An open transport; with `first`, one whose namespace calls start at that address
    (the start comes from the random client id: made again until it does)."""
    for _ in range(200):
        transport = MetaTransport(addresses, ME, timeout=5.0, retry=FAST, sleep=sleeps)
        if first is None or transport.answering[0] == first:
            await transport.open()
            return transport
    raise AssertionError(f"no client id started at {first}")


def _stat(transport: MetaTransport):
    return transport.call("Stat", lambda h: meta_pb2.StatRequest(header=h, path="/"), path="/")


def _routing(transport: MetaTransport):
    return transport.call("GetRouting", lambda h: mgmt_pb2.GetRoutingRequest(header=h), path=None, service="mgmt")


def run(peers: list[Peer], body):
    async def main():
        servers = await _serve(peers)
        try:
            return await body()
        finally:
            for server in servers:
                await server.stop(None)

    return asyncio.run(main())


def _ids(peer: Peer) -> list[tuple[str, int]]:
    return [(r.header.client_id, r.header.request_id) for r in peer.requests]


@pytest.mark.parametrize("away", [e.Unavailable("going down"), "hang"])
def test_an_away_metaserver_hands_the_same_request_to_the_next_at_once(away) -> None:
    a, b = Peer(away), Peer()
    sleeps = Sleeps()

    async def body():
        t = await _transport([a.address, b.address], sleeps, first=a.address)
        try:
            await _stat(t)
            assert len(a.requests) == 1 and _ids(a) == _ids(b)  # the same request id
            assert sleeps.delays == []  # no backoff while an address was untried
            await _stat(t)
            await _stat(t)
            assert len(a.requests) == 1 and len(b.requests) == 3  # stuck to the one that answered
            assert t.answering[0] == b.address
        finally:
            await t.close()

    run([a, b], body)


def test_a_dead_address_first_costs_nothing_but_a_refused_connection() -> None:
    b = Peer()
    sleeps = Sleeps()

    async def body():
        dead = _dead_address()
        t = await _transport([dead, b.address], sleeps, first=dead)
        try:
            await _stat(t)
            assert len(b.requests) == 1 and sleeps.delays == [] and t.calls["Stat"] == 2
        finally:
            await t.close()

    run([b], body)


@pytest.mark.parametrize(
    ("error", "raised"),
    [(e.NotFound("no such entry"), FileNotFoundError), (e.PermissionDenied("no"), PermissionError)],
)
def test_answers_never_move_to_another_address(error, raised) -> None:
    a, b = Peer(error), Peer()

    async def body():
        t = await _transport([a.address, b.address], Sleeps(), first=a.address)
        try:
            with pytest.raises(raised):
                await _stat(t)
        finally:
            await t.close()

    run([a, b], body)
    assert len(a.requests) == 1 and b.requests == []


def test_when_every_address_fails_whole_rounds_back_off_under_the_retry_policy() -> None:
    a, b = Peer(e.Unavailable("down")), Peer(e.Unavailable("down"))
    sleeps = Sleeps()

    async def body():
        t = await _transport([a.address, b.address], sleeps)
        try:
            with pytest.raises(ConnectionError):
                await _stat(t)
        finally:
            await t.close()

    run([a, b], body)
    # max_attempts counts rounds: 3 rounds of 2 addresses, a backoff between rounds only
    assert len(a.requests) == len(b.requests) == FAST.max_attempts
    assert len(sleeps.delays) == FAST.max_attempts - 1
    assert len(set(_ids(a) + _ids(b))) == 1


def test_manager_calls_look_for_the_primary_apart_from_namespace_calls() -> None:
    standby = Peer(e.NotPrimary("not the cluster manager primary; the primary is at elsewhere"))
    primary = Peer()
    sleeps = Sleeps()

    async def body():
        t = await _transport([standby.address, primary.address], sleeps, first=standby.address)
        try:
            await _routing(t)
            await _routing(t)
            assert t.answering == (standby.address, primary.address)
            standby.behaviour = "ok"  # a standby serves namespace calls; only Mgmt calls meet NotPrimary
            await _stat(t)  # namespace calls still start at their own preferred address
            assert isinstance(standby.requests[-1], meta_pb2.StatRequest)
        finally:
            await t.close()

    run([standby, primary], body)
    routing_at_standby = [r for r in standby.requests if isinstance(r, mgmt_pb2.GetRoutingRequest)]
    assert len(routing_at_standby) == 1  # the second GetRouting went straight to the primary
    assert sum(isinstance(r, mgmt_pb2.GetRoutingRequest) for r in primary.requests) == 2
    assert sleeps.delays == []


def test_wait_ready_is_ready_when_any_address_connects() -> None:
    b = Peer()

    async def body():
        dead = _dead_address()
        t = await _transport([dead, b.address], Sleeps(), first=dead)
        try:
            await t.wait_ready(5.0)
            assert t.answering[0] == b.address  # namespace calls start at the one connected
        finally:
            await t.close()
        t = await _transport([dead, _dead_address()], Sleeps())
        try:
            with pytest.raises(TimeoutError):
                await t.wait_ready(0.5)
        finally:
            await t.close()

    run([b], body)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_manager_link_finds_the_primary_sticks_and_logs_the_change_once(caplog) -> None:
    standby = Peer(e.NotPrimary("not the cluster manager primary"))
    primary = Peer()
    clock = Clock()

    dead = _dead_address()

    async def body():
        link = ManagerLink([dead, standby.address, primary.address], clock=clock)
        try:
            with caplog.at_level(logging.INFO, logger="emberfs.storage.agent"):
                reply, sent_at = await link.call("Heartbeat", mgmt_pb2.HeartbeatRequest(node_id=1), 1.0)
                # The lease renews from the sending of the attempt that was answered (the
                # dead address, never connected, costs no attempt: two clock readings).
                assert reply.routing_version == 7 and sent_at == 102.0
                await link.call("Heartbeat", mgmt_pb2.HeartbeatRequest(node_id=1), 1.0)
            assert link.address == primary.address
        finally:
            await link.close()

    run([standby, primary], body)
    assert len(standby.requests) == 1 and len(primary.requests) == 2
    changes = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert changes == [f"cluster manager at {primary.address} (was {dead})"]


def test_manager_link_raises_after_one_round_and_on_an_answer_at_once() -> None:
    a, b = Peer(e.NotPrimary("standby")), Peer(e.Unavailable("down"))

    async def body():
        link = ManagerLink([a.address, b.address], clock=Clock())
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await link.call("Heartbeat", mgmt_pb2.HeartbeatRequest(node_id=1), 1.0)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert len(a.requests) == len(b.requests) == 1
            a.behaviour = e.PermissionDenied("needs a server token")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await link.call("Heartbeat", mgmt_pb2.HeartbeatRequest(node_id=1), 1.0)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert len(a.requests) == 2 and len(b.requests) == 1  # not handed on
        finally:
            await link.close()

    run([a, b], body)
