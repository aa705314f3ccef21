"""Run the metaserver: Meta, Mgmt (the cluster manager) and gRPC health on one
grpc.aio server, plus the manager's tick and the chunk GC collector.

Start-up contract (scripts and tests rely on it): once the port is bound and the
services are ready, exactly one line goes to stdout, flushed:

    emberfs-meta listening on HOST:PORT

with the real port (a requested port 0 is resolved). Logs go to stderr. SIGTERM or
SIGINT stops accepting, gives in-flight calls GRACE_S to finish, drains and closes
the store, and exits 0.

`build_server` wires everything that needs the store: the namespace service, the
cluster manager (whose chain table becomes the store's chain allocator, so new files
get chains) and the GC collector; `MetaServer.start`/`stop` start and stop the
background tasks with the server. `extra_servicers` adds more services (tests).
With `config.tls`, the port is TLS; with `config.tls_ca`, the GC calls storage
servers over TLS. With `config.tokens`, every call but grpc health passes the token interceptor
(common/authgrpc.py) and the GC calls storage servers with the server token; with
`config.keys`, Open and friends hand out capabilities (capabilities.py), and the keys
file is re-read when it changes (checked each second) or on SIGHUP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import grpc
import lmdb
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from emberfs.common import eventloop
from emberfs.common.authgrpc import server_interceptors
from emberfs.common.capkeys import watch
from emberfs.common.errors import EmberError
from emberfs.common.rpc import server_options
from emberfs.common.tls import add_port

from .capabilities import CapabilityIssuer
from .config import MetaConfig, parse_listen
from .mgmt.gc import ChunkCollector, ChunkRemover, GrpcChunkRemover
from .mgmt.manager import ClusterManager
from .mgmt.servicer import MgmtServicer, add_mgmt_servicer
from .service import MetaServicer, add_meta_servicer
from .engine import Store, open_store
from .mgmt.primary import SOLE

if TYPE_CHECKING:
    from .etcdkv.election import EtcdElection

__all__ = ["GRACE_S", "GRPC_OPTIONS", "MetaServer", "build_server", "run", "serve"]

log = logging.getLogger("emberfs.metaserver")

GRACE_S = 2.0
GRPC_OPTIONS = server_options()
META_SERVICE_NAME = "emberfs.Meta"
MGMT_SERVICE_NAME = "emberfs.Mgmt"

AddServicer = Callable[[grpc.aio.Server], None]


@dataclasses.dataclass
class MetaServer:
    """A bound (not yet started) server and what it needs to run and stop."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    host: str
    port: int
    manager: ClusterManager
    collector: ChunkCollector
    election: EtcdElection | None = None  # several metaservers (etcd): who manages
    _campaign: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        await self.server.start()
        self.manager.start()
        self.collector.start()
        if self.election is not None:
            self._campaign = asyncio.create_task(
                self.election.run(self.manager.promote, self.manager.demote), name="mgmt-election")
        for name in ("", META_SERVICE_NAME, MGMT_SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float = GRACE_S) -> None:
        await self.health.enter_graceful_shutdown()
        # Background work first: nothing may write to the store once it closes.
        await self.collector.stop()
        if self._campaign is not None:
            self._campaign.cancel()
            await asyncio.gather(self._campaign, return_exceptions=True)
        await self.manager.stop()
        if self.election is not None:
            await self.election.resign()  # a standby takes over at once, not after the TTL
            self.election.close()
        await self.server.stop(grace)


def build_server(
    config: MetaConfig,
    store: Store,
    *,
    extra_servicers: Sequence[AddServicer] = (),
    remover: ChunkRemover | None = None,
) -> MetaServer:
    """Create the grpc.aio server with Meta, Mgmt, health and any extra servicers, and
    bind it; the cluster manager's chain table becomes the store's allocator.
    `remover` replaces the GC's storage calls (tests).

    Must be called with an event loop running (grpc.aio binds to it).
    """
    host, port = parse_listen(config.listen)
    server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=server_interceptors(config.tokens))
    bound = add_port(server, config.listen, config.tls)  # secure with --tls-cert/--tls-key
    if bound == 0 and port != 0:
        raise OSError(f"cannot listen on {config.listen}")
    election = _election(config, config.advertise or f"{host}:{bound}")
    manager = ClusterManager(store, config, gate=election or SOLE)
    store.allocator = manager.allocator
    server_token = config.tokens.server_token if config.tokens is not None else None
    collector = ChunkCollector(
        store,
        lambda: manager.state,
        remover or GrpcChunkRemover(token=server_token, tls_ca=config.tls_ca),
        interval_s=config.gc_interval_s,
        active=lambda: manager.is_primary,
    )
    add_meta_servicer(MetaServicer(store, CapabilityIssuer(config.keys, config.capability_ttl_s)), server)
    add_mgmt_servicer(MgmtServicer(manager), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for add in extra_servicers:
        add(server)
    return MetaServer(server, health_servicer, host, bound, manager, collector, election)


def _election(config: MetaConfig, address: str) -> EtcdElection | None:
    """The manager election when metaservers share the namespace (the etcd engine)."""
    if config.engine != "etcd":
        return None
    from .etcdkv.client import EtcdClient
    from .etcdkv.election import EtcdElection

    # Its own client, with calls bounded well inside a term, so a renewal that hangs on a
    # dead etcd member moves to the next member before the term runs out.
    client = EtcdClient(list(config.etcd_endpoints), timeout=max(0.3, config.manager_lease_s / 4))
    return EtcdElection(client, config.etcd_prefix.encode(), address, ttl_s=config.manager_lease_s)


async def serve(
    config: MetaConfig,
    *,
    extra_servicers: Sequence[AddServicer] = (),
    stop: asyncio.Event | None = None,
) -> None:
    """Open the store, serve until SIGTERM/SIGINT (or `stop` is set), shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    keys_task: asyncio.Task[None] | None = None
    if config.keys is not None:
        ring = config.keys
        loop.add_signal_handler(signal.SIGHUP, lambda: ring.reload_if_changed(force=True))
        keys_task = loop.create_task(watch(ring))
    store = open_store(config)
    try:
        meta = build_server(config, store, extra_servicers=extra_servicers)
        await meta.start()
        print(f"emberfs-meta listening on {meta.address}", flush=True)
        where = (f"data dir {config.data_dir}" if config.engine == "lmdb" else
                 f"etcd {','.join(config.etcd_endpoints)} prefix {config.etcd_prefix}")
        log.info("serving %s (%s), %s", meta.address, where,
                 f"tokens required ({len(config.tokens)} known)" if config.tokens is not None
                 else "no tokens (open to all)")
        log.info("TLS: %s; calls storage servers %s", "on" if config.tls is not None else "off (plaintext)",
                 f"over TLS (CA {config.tls_ca})" if config.tls_ca else "in plaintext")
        if config.keys is not None:  # ids only: key bytes never reach a log
            log.info("capabilities: signed with key %d of %s (keys %s), valid %g s", config.keys.keys.signing,
                     config.keys.path, sorted(config.keys.keys.keys), config.capability_ttl_s)
        await stop.wait()
        log.info("stopping: grace %.1f s for in-flight calls", GRACE_S)
        await meta.stop(GRACE_S)
    finally:
        if keys_task is not None:
            keys_task.cancel()
            await asyncio.gather(keys_task, return_exceptions=True)
            loop.remove_signal_handler(signal.SIGHUP)
        await store.aclose()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")


def run(config: MetaConfig) -> int:
    """Run the server in this process; the exit status."""
    logging.basicConfig(
        level=config.log_level_number,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        eventloop.run(serve(config))
    except (OSError, lmdb.Error) as exc:  # cannot bind, or cannot open the data dir
        log.error("%s", exc)
        return 1
    except EmberError as exc:  # e.g. etcd unreachable at start
        log.error("%s", exc.message)
        return 1
    return 0
