"""Cluster commands: `emberfs cluster [--json]`, `emberfs cluster wait [--timeout S]`,
`emberfs cluster --watch [--interval S] [--count N] [--timeout S]`,
`emberfs admin init-chains --replicas R [--chains N]` and
`emberfs admin offline-target ID` / `online-target ID`, and
`emberfs admin gen-certs DIR [--hosts h1,h2]` (certs.py: TLS files, no cluster call).

They read and change the cluster manager (the metaserver's Mgmt service) through the
client, so they share its headers, deadlines and error translation.

`--watch` polls the routing and prints one line per change, in the words the manager
logs them (`chain 3 v7: target 201 SERVING -> OFFLINE`, from the `chain_transitions`
the manager uses, common/chainstate.py), plus node liveness; a metaserver that stops answering is one
line, and the watch goes on until it answers again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from emberfs.common.chainstate import chain_transitions
from emberfs.common.routing import RoutingView
from emberfs.proto import mgmt_pb2

from .._admin import cluster_problems
from .._meta import metaservers_at
from ._base import CliContext, Command
from .certs import gen_certs_command

__all__ = ["COMMANDS", "format_routing", "routing_changes", "routing_json"]

_WAIT_POLL_S = 0.2
_WAIT_DEFAULT_S = 60.0


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
            f"{t.target_id:>6}  {t.node_id:>4}  {t.chain_id:>5}"
            f"  {_public(t.public_state).removeprefix('PUBLIC_STATE_'):<7}"
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


def routing_changes(old: mgmt_pb2.RoutingInfo, new: mgmt_pb2.RoutingInfo) -> list[str]:
    """What moved from one routing to the next, one line each: nodes that died or came
    back, then every target whose public state changed, chain by chain. Pure."""
    lines = []
    was_alive = {n.node_id: n.alive for n in old.nodes}
    for node in sorted(new.nodes, key=lambda n: n.node_id):
        before = was_alive.get(node.node_id)
        if before is None:
            lines.append(f"node {node.node_id} registered at {node.address}")
        elif before != node.alive:
            lines.append(f"node {node.node_id} at {node.address}: {_liveness(before)} -> {_liveness(node.alive)}")
    lines += chain_transitions(RoutingView(old).chains, RoutingView(new).chains)
    return lines


def _liveness(alive: bool) -> str:
    return "alive" if alive else "dead"


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["wait"], help="wait: until every chain's targets all serve")
    p.add_argument("--json", action="store_true", help="print the routing as JSON")
    p.add_argument("--watch", action="store_true",
                   help="print one line per node, chain or target state change until interrupted")
    p.add_argument("--interval", type=float, default=0.2, metavar="S",
                   help="--watch: poll the routing every S seconds (default 0.2)")
    p.add_argument("--count", type=int, default=0, metavar="N",
                   help="--watch: stop after N changes (exit 1 if the timeout comes first)")
    p.add_argument("--timeout", dest="wait_timeout", type=float, default=None, metavar="S",
                   help=f"cluster wait: give up after S seconds (default {_WAIT_DEFAULT_S:g}); "
                        "--watch: stop after S seconds (default: never)")


async def _cluster(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.watch:
        if args.action == "wait" or args.json:
            print("emberfs: cluster: --watch goes with neither `wait` nor --json", file=ctx.err)
            return 2
        if args.interval <= 0 or args.count < 0:
            print("emberfs: cluster: --interval must be > 0 and --count >= 0", file=ctx.err)
            return 2
        return await _watch(ctx, interval=args.interval, count=args.count, timeout=args.wait_timeout)
    client = await ctx.client()
    if args.action == "wait":
        return await _wait(ctx, _WAIT_DEFAULT_S if args.wait_timeout is None else args.wait_timeout)
    routing = await client.routing()
    if args.json:
        ctx.print(json.dumps({**routing_json(routing), "manager": client.manager_address}, indent=2))
    else:
        ctx.print(f"cluster manager at {client.manager_address}")
        for line in format_routing(routing):
            ctx.print(line)
    return 0


async def _wait(ctx: CliContext, timeout: float) -> int:
    client = await ctx.client(polling=True)
    deadline = time.monotonic() + timeout
    problems = ["no answer from the cluster manager"]
    while True:
        try:
            problems = cluster_problems(await client.routing())
        except (ConnectionError, TimeoutError) as exc:
            problems = [f"cannot reach {metaservers_at(ctx.meta)}: {exc}"]
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


async def _watch(ctx: CliContext, *, interval: float, count: int, timeout: float | None) -> int:
    """Poll the routing; print the starting chains, then each change as it appears."""
    client = await ctx.client(polling=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    last: mgmt_pb2.RoutingInfo | None = None
    unreachable = False
    seen = 0
    while True:
        try:
            routing = await client.routing()
        except (ConnectionError, TimeoutError) as exc:
            if not unreachable:
                _stamped(ctx, f"{metaservers_at(ctx.meta)} unreachable: {exc}")
                unreachable = True
        else:
            if unreachable:
                _stamped(ctx, f"{metaservers_at(ctx.meta)} answers again")
                unreachable = False
            if last is None:
                _stamped(ctx, f"routing version {routing.routing_version}")
                for chain in sorted(routing.chains, key=lambda c: c.chain_id):
                    targets = " ".join(f"{t.target_id}:{_public(t.public_state)}" for t in chain.targets)
                    _stamped(ctx, f"chain {chain.chain_id} v{chain.chain_version}: {targets}")
            else:
                for line in routing_changes(last, routing):
                    _stamped(ctx, line)
                    seen += 1
                    if count and seen >= count:
                        return 0
            last = routing
        if deadline is not None and time.monotonic() >= deadline:
            if count:
                print(f"emberfs: cluster --watch: {seen} of {count} changes within {timeout:g} s", file=ctx.err)
                return 1
            return 0
        pause = interval if deadline is None else min(interval, max(deadline - time.monotonic(), 0.0))
        await asyncio.sleep(pause)


def _stamped(ctx: CliContext, text: str) -> None:
    """One watch line, led by the local wall-clock time to the millisecond; flushed at
    once so a pipe (`| tee`, a test) sees each change when it happens."""
    now = time.time()
    ctx.print(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} {text}")
    ctx.out.flush()


_TARGET_ACTIONS = {"offline-target": True, "online-target": False}


def _admin_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=["init-chains", *_TARGET_ACTIONS, "gen-certs"],
        help="init-chains: create the chain table; offline-target ID: take a target out for maintenance "
             "(its chain goes on without it); online-target ID: let it rejoin (it resyncs, then serves); "
             "gen-certs DIR: make a test CA and a server certificate for TLS",
    )
    p.add_argument("target_id", nargs="?", metavar="ID|DIR",
                   help="offline-/online-target: the target id; gen-certs: the directory to write")
    p.add_argument("--hosts", default="", metavar="H1,H2",
                   help="gen-certs: more names or addresses the server certificate covers (besides localhost and "
                        "127.0.0.1)")
    p.add_argument("--replicas", type=int, metavar="R", help="init-chains: targets per chain, on distinct nodes")
    p.add_argument("--chains", type=int, default=0, metavar="N",
                   help="init-chains: how many chains (default: as many as fit)")


async def _admin(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.action == "gen-certs":
        return gen_certs_command(ctx, args.target_id, args.hosts)
    if args.action in _TARGET_ACTIONS:
        target_id = args.target_id
        if target_id is not None and not target_id.lstrip("-").isdigit():
            print(f"emberfs: admin {args.action}: target id {target_id!r} is not a number", file=ctx.err)
            return 2
        return await _set_target_admin_state(ctx, args.action, None if target_id is None else int(target_id),
                                             offline=_TARGET_ACTIONS[args.action])
    if args.replicas is None:
        print("emberfs: admin init-chains: --replicas R is required", file=ctx.err)
        return 2
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


async def _set_target_admin_state(ctx: CliContext, action: str, target_id: int | None, *, offline: bool) -> int:
    """Mgmt.SetTargetAdminState, then the target's chain as the manager now has it. An
    admin-offline target counts as OFFLINE whatever its server reports, until onlined."""
    if target_id is None or target_id < 1:
        print(f"emberfs: admin {action}: a target id (>= 1) is required", file=ctx.err)
        return 2
    client = await ctx.client()
    try:
        reply = await client._call_mgmt(
            "SetTargetAdminState",
            lambda h: mgmt_pb2.SetTargetAdminStateRequest(header=h, target_id=target_id, offline=offline),
        )
    except (ConnectionError, TimeoutError):
        raise
    except OSError as exc:
        print(f"emberfs: admin {action}: target {target_id}: {exc.strerror or exc}", file=ctx.err)
        return 1
    ctx.print(f"target {target_id} is admin {'offline' if offline else 'online'}")
    info = next((t for t in reply.routing.targets if t.target_id == target_id), None)
    chain = next((c for c in reply.routing.chains if info is not None and c.chain_id == info.chain_id), None)
    if chain is not None:
        ctx.print(f"chain {chain.chain_id} v{chain.chain_version}: " + "  ".join(
            f"{t.target_id}:{_public(t.public_state)}" for t in chain.targets))
    return 0


COMMANDS = (
    Command("cluster", "show nodes, chains and targets, or wait until every chain serves",
            _cluster_arguments, _cluster),
    Command("admin", "cluster administration: init-chains, offline-target, online-target", _admin_arguments, _admin),
)
