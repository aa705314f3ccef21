"""`emberfs health [ADDRESS[,ADDRESS...]] [--nodes N] [--wait S]`: are servers up, for
health checks.

Asks each server at ADDRESS (default: the metaservers, `--meta`) for the standard gRPC
health status, which both `emberfs-meta` and `emberfs-storage` serve; with `--nodes N`
also asks the cluster manager that at least N storage nodes are registered and alive
(what must hold before `emberfs admin init-chains` can place chains). Exit 0 and one
line per server when all holds, else 1, the servers that are up on stdout and the
problems on stderr: with several addresses every one must answer SERVING. `--wait S`
asks again every half second until all holds or S seconds pass, so a one-shot container
can wait for the cluster without a shell loop.

Every probe is bounded by the global `--timeout` (a container health check wants a
few seconds, not the CLI's default 30): a server that does not answer in time is a
problem, not a hang.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emberfs.common.errors import InvalidArgument
from emberfs.common.hostports import parse_address_list
from emberfs.common.rpc import channel_options
from emberfs.common.tls import aio_channel

from .._admin import cluster_problems
from .._meta import metaservers_at
from ._base import CliContext, Command

__all__ = ["COMMANDS", "probe_server"]

_POLL_S = 0.5


async def probe_server(address: str, timeout: float, tls_ca: str | None = None) -> str | None:
    """None when the server at `address` reports SERVING over gRPC health, else why not."""
    async with aio_channel(address, tls_ca, channel_options()) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as exc:
            return f"{address}: {exc.code().name}: {exc.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


async def _node_problems(ctx: CliContext, nodes: int) -> list[str]:
    try:
        client = await ctx.client()
        routing = await asyncio.wait_for(client.routing(), ctx.timeout)
    except (ConnectionError, TimeoutError, OSError) as exc:
        return [f"cannot read the routing from {metaservers_at(ctx.meta)}: {exc or type(exc).__name__}"]
    return cluster_problems(routing, nodes=nodes)


async def _statuses(ctx: CliContext, addresses: tuple[str, ...]) -> list[str | None]:
    """Each server's problem (None: SERVING), asked all at once."""
    return list(await asyncio.gather(*(probe_server(a, ctx.timeout, ctx.tls_ca) for a in addresses)))


def _address_list(value: str) -> tuple[str, ...]:
    try:
        return parse_address_list(value, what="health address")
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("address", nargs="?", type=_address_list, metavar="HOST:PORT[,HOST:PORT...]",
                   help="the servers to ask (default: the metaservers given by --meta)")
    p.add_argument("--nodes", type=int, default=None, metavar="N",
                   help="also require N storage nodes registered and alive at the cluster manager")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="ask again until healthy, for up to S seconds (default: ask once)")


async def _run(ctx: CliContext, args: argparse.Namespace) -> int:
    if (args.nodes is not None and args.nodes < 1) or args.wait < 0:
        print("emberfs: health: --nodes must be >= 1 and --wait >= 0", file=ctx.err)
        return 2
    addresses = args.address or parse_address_list(ctx.meta)
    deadline = time.monotonic() + args.wait
    while True:
        statuses = await _statuses(ctx, addresses)
        problems = [why for why in statuses if why is not None]
        if args.nodes is not None:
            problems += await _node_problems(ctx, args.nodes)
        if not problems or time.monotonic() >= deadline:
            break
        await asyncio.sleep(_POLL_S)
    for line in _serving_lines(addresses, statuses, args.nodes, problems):
        ctx.print(line)
    for problem in problems:
        print(f"emberfs: health: {problem}", file=ctx.err)
    return 1 if problems else 0


def _serving_lines(addresses: tuple[str, ...], statuses: list[str | None], nodes: int | None,
                   problems: list[str]) -> list[str]:
    """stdout: one line per server that is up (with one server, only when all holds: the
    line a health check has always printed)."""
    if len(addresses) == 1:
        alive = f", {nodes} storage nodes alive" if nodes is not None else ""
        return [] if problems else [f"{addresses[0]}: SERVING{alive}"]
    lines = [f"{a}: SERVING" for a, why in zip(addresses, statuses, strict=True) if why is None]
    return lines + ([f"{nodes} storage nodes alive"] if nodes is not None and not problems else [])


COMMANDS = (
    Command("health", "are the metaservers (or the servers named) up (gRPC health); with --nodes, are N storage "
                      "nodes alive",
            _arguments, _run),
)
