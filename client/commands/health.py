"""`emberfs health [ADDRESS] [--nodes N] [--wait S]`: is a server up, for health checks.

Asks the server at ADDRESS (default: the metaserver, `--meta`) for the standard gRPC
health status, which both `emberfs-meta` and `emberfs-storage` serve; with `--nodes N`
also asks the metaserver that at least N storage nodes are registered and alive (what
must hold before `emberfs admin init-chains` can place chains). Exit 0 and one line
when all holds, else 1 and the problems on stderr. `--wait S` asks again every half
second until all holds or S seconds pass, so a one-shot container can wait for the
cluster without a shell loop.

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

from emberfs.common.rpc import channel_options
from emberfs.common.tls import aio_channel

from .._admin import cluster_problems
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
        return [f"cannot read the routing from the metaserver at {ctx.meta}: {exc or type(exc).__name__}"]
    return cluster_problems(routing, nodes=nodes)


async def _problems(ctx: CliContext, address: str, nodes: int | None) -> list[str]:
    problems = []
    why = await probe_server(address, ctx.timeout, ctx.tls_ca)
    if why is not None:
        problems.append(why)
    if nodes is not None:
        problems += await _node_problems(ctx, nodes)
    return problems


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("address", nargs="?", metavar="HOST:PORT",
                   help="the server to ask (default: the metaserver given by --meta)")
    p.add_argument("--nodes", type=int, default=None, metavar="N",
                   help="also require N storage nodes registered and alive at the metaserver")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="ask again until healthy, for up to S seconds (default: ask once)")


async def _run(ctx: CliContext, args: argparse.Namespace) -> int:
    if (args.nodes is not None and args.nodes < 1) or args.wait < 0:
        print("emberfs: health: --nodes must be >= 1 and --wait >= 0", file=ctx.err)
        return 2
    address = args.address or ctx.meta
    deadline = time.monotonic() + args.wait
    while True:
        problems = await _problems(ctx, address, args.nodes)
        if not problems:
            nodes = f", {args.nodes} storage nodes alive" if args.nodes is not None else ""
            ctx.print(f"{address}: SERVING{nodes}")
            return 0
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(_POLL_S)
    for problem in problems:
        print(f"emberfs: health: {problem}", file=ctx.err)
    return 1


COMMANDS = (
    Command("health", "is a metaserver or storage server up (gRPC health); with --nodes, are N storage nodes alive",
            _arguments, _run),
)
