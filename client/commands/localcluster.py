"""`emberfs local-cluster`: a metaserver and N storage servers as local processes.

Runs in the foreground: progress goes to stderr, then ONE stdout line
`emberfs local-cluster ready: meta at HOST:PORT`. SIGINT or SIGTERM stops every
child (SIGKILL after a bound) and exits 0. A child that dies is reported once on
stderr and left down: tests kill and restart servers themselves. Started again on
the same data dir it brings back the same cluster (`LocalCluster` keeps the ports).
`--engine etcd` keeps the namespace in etcd: at `--etcd HOST:PORT,...`, or in a local etcd of
`--etcd-members` members (Debian's etcd-server) that it starts under DATA_DIR/etcd and stops
with the rest. `--auth` makes every server require tokens (a tokens file and capability keys generated
in the data dir, kept across restarts; the user token is never root) and says on stderr
which token is which and how the client presents one. `--tls`
serves TLS everywhere (a CA and a server certificate generated in DATA_DIR/tls) and says
which CA file clients pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from emberfs.common.errors import EmberError

from .._launch import ADMIN_TOKEN_FILE, USER_TOKEN_FILE, LocalCluster, ServerStartError
from ._base import CliContext, Command

__all__ = ["COMMANDS", "READY_PREFIX"]

READY_PREFIX = "emberfs local-cluster ready: meta at "
_WATCH_S = 0.2


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, type=Path, help="where every server keeps its data")
    p.add_argument("--nodes", type=int, default=3, help="storage servers (default 3)")
    p.add_argument("--replicas", type=int, default=3, help="targets per chain (default 3)")
    p.add_argument("--targets-per-node", type=int, default=1, help="targets on each storage server (default 1)")
    p.add_argument("--meta-listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="metaserver address (default: a free port, kept for restarts)")
    p.add_argument("--chunk-size", type=int, default=None, metavar="BYTES", help="default chunk size of new files")
    p.add_argument("--heartbeat-interval", type=float, default=None, metavar="S")
    p.add_argument("--heartbeat-timeout", type=float, default=None, metavar="S")
    p.add_argument("--start-timeout", type=float, default=120.0, metavar="S", help="bound on starting up")
    p.add_argument("--auth", action="store_true",
                   help="require tokens: generate DATA_DIR/tokens.json (0600) with an admin, a server and a user "
                        "token on the first start, and start every server with it")
    p.add_argument("--capability-ttl", type=float, default=None, metavar="S",
                   help="with --auth: seconds a chunk-access capability lives (the metaserver's default: 60)")
    p.add_argument("--engine", choices=("lmdb", "etcd"), default="lmdb",
                   help="where the namespace lives: lmdb (in DATA_DIR, the default) or etcd")
    p.add_argument("--etcd", default="", metavar="HOST:PORT[,...]",
                   help="with --engine etcd: an etcd to use (default: start one under DATA_DIR/etcd)")
    p.add_argument("--etcd-members", type=int, choices=(1, 3, 5), default=3,
                   help="with --engine etcd and no --etcd: members of the local etcd (default 3)")
    p.add_argument("--metaservers", type=int, default=1, metavar="N",
                   help="with --engine etcd: metaservers sharing the namespace; one of them is the cluster "
                        "manager primary, another takes over when it dies (default 1)")
    p.add_argument("--tls", action="store_true",
                   help="serve TLS: generate DATA_DIR/tls/{ca,server}.{pem,key} on the first start and start every "
                        "server with them (clients: --tls-ca DATA_DIR/tls/ca.pem)")


def _token_roles(tokens_file: Path, data_dir: Path) -> list[str]:
    """One line per generated token file: whose it is and what it may do (no secrets)."""
    try:
        entries = {e["name"]: e for e in json.loads(tokens_file.read_text())["tokens"]}
    except (OSError, ValueError, KeyError, TypeError):
        return []
    lines = []
    if "admin" in entries:
        lines.append(f"{data_dir / ADMIN_TOKEN_FILE}: the admin token (acts as any uid, root included; "
                     "cluster commands)")
    user = entries.get("user")
    if user is not None and "uid" in user:
        lines.append(f"{data_dir / USER_TOKEN_FILE}: a user token, uid {user['uid']} gid {user['gid']} "
                     "(POSIX permissions apply: it cannot read another user's 0600 file)")
    return lines


def _say(text: str) -> None:
    print(f"emberfs local-cluster: {text}", file=sys.stderr, flush=True)


def _start_etcd(args: argparse.Namespace) -> tuple[Any, list[str], int | None]:
    """(the local etcd cluster or None, the endpoints, its ops per Txn or None) for --engine etcd."""
    if args.etcd:
        return None, [e.strip() for e in args.etcd.split(",") if e.strip()], None
    from emberfs.metaserver.etcdkv.launch import EtcdCluster, install_etcd

    why = install_etcd(_say)
    if why:
        raise RuntimeError(why)
    etcd = EtcdCluster(args.data_dir / "etcd", members=args.etcd_members)
    etcd.start(timeout=args.start_timeout)
    _say(f"etcd: {len(etcd.members)} members at {','.join(etcd.endpoints)} (data in {args.data_dir / 'etcd'})")
    return etcd, etcd.endpoints, etcd.max_txn_ops


async def _run(ctx: CliContext, args: argparse.Namespace) -> int:
    etcd: Any = None
    endpoints: list[str] = []
    max_ops: int | None = None
    if args.engine == "etcd":
        try:
            etcd, endpoints, max_ops = await asyncio.to_thread(_start_etcd, args)
        except (RuntimeError, OSError, TimeoutError, EmberError) as exc:
            _say(f"failed to start etcd: {exc}")
            return 1
    try:
        return await _serve(ctx, args, endpoints, max_ops)
    finally:
        if etcd is not None:
            await asyncio.to_thread(etcd.stop)


async def _serve(ctx: CliContext, args: argparse.Namespace, endpoints: list[str], max_ops: int | None) -> int:
    try:
        cluster = LocalCluster(
            args.data_dir,
            nodes=args.nodes,
            replicas=args.replicas,
            targets_per_node=args.targets_per_node,
            meta_listen=args.meta_listen,
            chunk_size=args.chunk_size,
            heartbeat_interval=args.heartbeat_interval,
            heartbeat_timeout=args.heartbeat_timeout,
            auth=args.auth,
            capability_ttl=args.capability_ttl,
            tls=args.tls,
            etcd_endpoints=endpoints,
            etcd_max_txn_ops=max_ops,
            metaservers=args.metaservers,
        )
    except (ValueError, EmberError, OSError) as exc:
        _say(str(exc))
        return 2
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        # start() blocks (it waits on processes); a signal meanwhile is honoured after it.
        address = await asyncio.to_thread(cluster.start, args.start_timeout, progress=_say)
    except (ServerStartError, TimeoutError, RuntimeError, OSError) as exc:
        _say(f"failed to start: {exc}")
        return 1
    try:
        if cluster.tokens_file is not None:
            _say(f"tokens required: {cluster.tokens_file}, capability keys {cluster.keys_file} (keep both private)")
        if cluster.tokens_file is not None and (cluster.data_dir / USER_TOKEN_FILE).exists():
            data_dir = cluster.data_dir
            for line in _token_roles(cluster.tokens_file, data_dir):
                _say(line)
            _say(f"use it: emberfs --meta {address} --token-file {data_dir / USER_TOKEN_FILE} ls /   "
                 f"(or EMBERFS_TOKEN=$(cat {data_dir / USER_TOKEN_FILE}); admin commands: "
                 f"--token-file {data_dir / ADMIN_TOKEN_FILE})")
        if cluster.tls_ca is not None:
            _say(f"TLS on: clients need --tls-ca {cluster.tls_ca} (or EMBERFS_TLS_CA={cluster.tls_ca})")
        if not stopping.is_set():
            print(f"{READY_PREFIX}{address}", file=ctx.out, flush=True)
        reported: set[int] = set()
        while not stopping.is_set():
            for i, (name, proc) in enumerate(cluster.processes()):
                code = proc.returncode
                if code is not None and i not in reported:
                    reported.add(i)
                    _say(f"{name} (pid {proc.pid}) exited with code {code}")
                elif code is None:
                    reported.discard(i)  # restarted by someone else: report its next exit
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), _WATCH_S)
        _say("stopping")
    finally:
        await asyncio.to_thread(cluster.stop)
    _say("stopped")
    return 0


COMMANDS = (
    Command("local-cluster", "run a metaserver and N storage servers here, in the foreground", _arguments, _run),
)
