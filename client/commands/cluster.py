"""Cluster commands: `emberfs cluster [--json]`, `emberfs cluster wait [--timeout S]`
and `emberfs admin init-chains --replicas R [--chains N]`.

They read and change the cluster manager (the metaserver's Mgmt service) through the
client, so they share its headers, deadlines and error translation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from emberfs.proto import mgmt_pb2

from .._admin import cluster_problems
from ._base import CliContext, Command

__all__ = ["COMMANDS", "format_routing", "routing_json"]

_WAIT_POLL_S = 0.2


def _public(state: int) -> str:
    return mgmt_pb2.PublicTargetState.Name(state)


def _local(state: int) -> str:
    return mgmt_pb2.LocalTargetState.Name(state).removeprefix("LOCAL_")


def _chain_line(chain: mgmt_pb2.ChainInfo) -> str:
    targets = "  ".join(f"{t.target_id}:{_public(t.public_state)}" for t in chain.targets)
    return f"{chain.chain_id:>6}  {chain.chain_version:>7}  {targets}"


def format_routing(routing: mgmt_pb2.RoutingInfo) -> list[str]:
    """The routing as readable tables: nodes, chains (targets head..tail), targets."""
    lines = [f"routing version {routing.routing_version}", "", "NODE  ADDRESS                 ALIVE"]
    for node in sorted(routing.nodes, key=lambda n: n.node_id):
        lines.append(f"{node.node_id:>4}  {node.address:<22}  {'yes' if node.alive else 'NO'}")
    lines += ["", " CHAIN  VERSION  TARGETS (head..tail)"]
    if not routing.chains:
        lines.append("  (none: run `emberfs admin init-chains --replicas R`)")
    lines += [_chain_line(c) for c in sorted(routing.chains, key=lambda c: c.chain_id)]
    lines += ["", "TARGET  NODE  CHAIN  PUBLIC   LOCAL      CHUNKS          BYTES"]
    for t in sorted(routing.targets, key=lambda t: t.target_id):
        lines.append(
            f"{t.target_id:>6}  {t.node_id:>4}  {t.chain_id:>5}  {_public(t.public_state).removeprefix('PUBLIC_STATE_'):<7}"
            f"  {_local(t.local_state):<9}  {t.chunks:>6}  {t.used_bytes:>13}"
        )
    return lines


def routing_json(routing: mgmt_pb2.RoutingInfo) -> dict[str, object]:
    """The routing as plain JSON data: numbers as numbers, states by name."""
    return {
        "routing_version": routing.routing_version,
        "nodes": [
            {"node_id": n.node_id, "address": n.address, "alive": n.alive, "last_heartbeat_ms": n.last_heartbeat_ms}
            for n in routing.nodes
        ],
        "chains": [
            {
                "chain_id": c.chain_id,
                "chain_version": c.chain_version,
                "targets": [{"target_id": t.target_id, "public_state": _public(t.public_state)} for t in c.targets],
            }
            for c in routing.chains
        ],
        "targets": [
            {
                "target_id": t.target_id,
                "node_id": t.node_id,
                "chain_id": t.chain_id,
                "public_state": _public(t.public_state),
                "local_state": _local(t.local_state),
                "chunks": t.chunks,
                "used_bytes": t.used_bytes,
                "capacity_bytes": t.capacity_bytes,
            }
            for t in routing.targets
        ],
    }


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["wait"], help="wait: until every chain's targets all serve")
    p.add_argument("--json", action="store_true", help="print the routing as JSON")
    p.add_argument("--timeout", dest="wait_timeout", type=float, default=60.0, metavar="S",
                   help="cluster wait: give up after S seconds (default 60)")


async def _cluster(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    if args.action == "wait":
        return await _wait(ctx, args.wait_timeout)
    routing = await client.routing()
    if args.json:
        ctx.print(json.dumps(routing_json(routing), indent=2))
    else:
        for line in format_routing(routing):
            ctx.print(line)
    return 0


async def _wait(ctx: CliContext, timeout: float) -> int:
    client = await ctx.client()
    deadline = time.monotonic() + timeout
    problems = ["no answer from the cluster manager"]
    while True:
        try:
            problems = cluster_problems(await client.routing())
        except (ConnectionError, TimeoutError) as exc:
            problems = [f"cannot reach the metaserver at {ctx.meta}: {exc}"]
        if not problems:
            ctx.print("every chain is serving")
            return 0
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(_WAIT_POLL_S)
    print(f"emberfs: cluster wait: not ready after {timeout:g} s:", file=ctx.err)
    for problem in problems:
        print(f"  {problem}", file=ctx.err)
    return 1


def _admin_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["init-chains"], help="init-chains: create the chain table")
    p.add_argument("--replicas", type=int, required=True, metavar="R", help="targets per chain, on distinct nodes")
    p.add_argument("--chains", type=int, default=0, metavar="N", help="how many chains (default: as many as fit)")


async def _admin(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.replicas < 1 or args.chains < 0:
        print("emberfs: admin: --replicas must be >= 1 and --chains >= 0", file=ctx.err)
        return 2
    client = await ctx.client()
    try:
        reply = await client.init_chains(args.replicas, args.chains)
    except (ConnectionError, TimeoutError):
        raise
    except OSError as exc:
        print(f"emberfs: admin init-chains: {exc.strerror or exc}", file=ctx.err)
        return 1
    if reply.created:
        ctx.print(f"created {len(reply.chains)} chains of {args.replicas} replicas")
    else:
        ctx.print(f"chains already existed: {len(reply.chains)} chains, nothing created")
    for chain in reply.chains:
        ctx.print(_chain_line(chain))
    return 0


COMMANDS = (
    Command("cluster", "show nodes, chains and targets, or wait until every chain serves", _cluster_arguments, _cluster),
    Command("admin", "cluster administration: init-chains", _admin_arguments, _admin),
)
