"""Cluster-manager questions shared by the launcher and the CLI: is the cluster ready?

`cluster_problems` is pure: given a RoutingInfo it lists what keeps the cluster from
serving (no chains, a target not SERVING, a dead node). The `*_sync` helpers drive
blocking Mgmt calls for `LocalCluster`, which runs outside any event loop.
"""

from __future__ import annotations

import time
import uuid

import grpc

from emberfs.common.authgrpc import bearer_metadata
from emberfs.common.errors import EmberError, from_rpc_error
from emberfs.common.hostports import parse_address_list
from emberfs.common.rpc import channel_options
from emberfs.common.tls import sync_channel
from emberfs.proto import common_pb2, mgmt_pb2, mgmt_pb2_grpc

__all__ = ["cluster_problems", "init_chains_sync", "wait_cluster_sync"]

_POLL_S = 0.1


def cluster_problems(routing: mgmt_pb2.RoutingInfo, *, nodes: int | None = None) -> list[str]:
    """What is not ready. With `nodes`: only that this many nodes are registered and
    alive (chains are not asked for); without: chains exist and every target SERVES."""
    alive = [n for n in routing.nodes if n.alive]
    if nodes is not None:
        if len(alive) < nodes:
            return [f"{len(alive)} of {nodes} storage nodes registered and alive"]
        return []
    if not routing.chains:
        return ["no chains: run `emberfs admin init-chains`"]
    problems = []
    for chain in routing.chains:
        for target in chain.targets:
            if target.public_state != mgmt_pb2.SERVING:
                state = mgmt_pb2.PublicTargetState.Name(target.public_state)
                problems.append(f"chain {chain.chain_id}: target {target.target_id} is {state}")
    return problems


def _header() -> common_pb2.RequestHeader:
    return common_pb2.RequestHeader(client_id=uuid.uuid4().hex, request_id=1)


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return bearer_metadata(token) if token else ()


class _Manager:
    """Blocking Mgmt stubs over every listed metaserver; `stub` is the one to ask now and
    `move_on()` turns to the next (a standby answers NotPrimary, a dead one UNAVAILABLE)."""

    def __init__(self, meta: str, tls_ca: str | None) -> None:
        self._channels = [sync_channel(a, tls_ca, channel_options()) for a in parse_address_list(meta)]
        self._stubs = [mgmt_pb2_grpc.MgmtStub(c) for c in self._channels]
        self._index = 0

    @property
    def stub(self) -> mgmt_pb2_grpc.MgmtStub:
        return self._stubs[self._index]

    def move_on(self) -> None:
        self._index = (self._index + 1) % len(self._stubs)

    def __enter__(self) -> _Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        for channel in self._channels:
            channel.close()


def wait_cluster_sync(meta: str, deadline: float, *, nodes: int | None = None, serving: bool = False,
                      token: str | None = None, tls_ca: str | None = None) -> None:
    """Block until `cluster_problems` is empty; TimeoutError naming the problems at the deadline.
    `meta`: one metaserver address or several, comma-separated (the primary answers)."""
    problems = ["the metaserver did not answer"]
    with _Manager(meta, tls_ca) as manager:
        while time.monotonic() < deadline:
            try:
                reply = manager.stub.GetRouting(mgmt_pb2.GetRoutingRequest(header=_header()), timeout=5,
                                                metadata=_metadata(token))
                problems = cluster_problems(reply.routing, nodes=nodes)
                if not problems:
                    return
            except grpc.RpcError as exc:
                problems = [f"GetRouting failed: {from_rpc_error(exc)}"]
                manager.move_on()
            time.sleep(_POLL_S)
    raise TimeoutError("cluster not ready: " + "; ".join(problems))


def init_chains_sync(
    meta: str, replicas: int, deadline: float, chains: int = 0, *, token: str | None = None,
    tls_ca: str | None = None,
) -> tuple[bool, list[mgmt_pb2.ChainInfo]]:
    """InitChains (idempotent; with tokens, `token` must be an admin's); returns
    (created, chains). Retries while unavailable."""
    with _Manager(meta, tls_ca) as manager:
        while True:
            try:
                reply = manager.stub.InitChains(
                    mgmt_pb2.InitChainsRequest(header=_header(), replicas=replicas, chains=chains), timeout=10,
                    metadata=_metadata(token),
                )
                return reply.created, list(reply.chains)
            except grpc.RpcError as exc:
                error: EmberError = from_rpc_error(exc)
                if not error.retryable or time.monotonic() >= deadline:
                    raise RuntimeError(f"InitChains failed: {error}") from None
                manager.move_on()
            time.sleep(_POLL_S)
