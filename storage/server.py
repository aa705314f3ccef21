"""Run a storage server: the Storage service (CRAQ operator over this node's targets),
gRPC health, and the agent that registers and heartbeats with the metaserver.

Start-up contract: once the port is bound, exactly one stdout line, flushed:

    emberfs-storage listening on HOST:PORT

(the real port; a requested port 0 is resolved). Registration retries in the
background until the metaserver answers. Logs go to stderr. SIGTERM/SIGINT: one
last heartbeat reporting every target LOCAL_OFFLINE (bounded), stop gRPC with
GRACE_S for in-flight calls, close the peers, the thread pool and the stores; exit 0.

Disk I/O runs in a ThreadPoolExecutor of IO_THREADS (LMDB's reader slots are few).
The operator, the agent and the resync worker share one NodeHealth: the lease, the
targets failed by disk errors and the resync marks (localstate.py).

With tokens (config.tokens), gRPC calls pass the token interceptor (common/authgrpc.py),
the bulk channel checks its hello, and the agent and the peer pool send this server's
own server token, and client Read/Write need a capability (access.py) checked against
config.keys, re-read when the keys file changes (each second) or on SIGHUP. With TLS
(config.tls), gRPC and the bulk channel serve TLS; with config.tls_ca, the agent and the
peer pool call over TLS (common/tls.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import lmdb
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from emberfs.common import eventloop
from emberfs.common.authgrpc import server_interceptors
from emberfs.common.capkeys import watch
from emberfs.common.errors import EmberError
from emberfs.common.hostports import parse_hostport
from emberfs.common.malloc import tune_malloc
from emberfs.common.rpc import server_options
from emberfs.common.storagepool import StoragePool
from emberfs.common.tls import add_port

from .access import AccessGuard
from .agent import Agent
from .bulkserver import BulkServer
from .config import StorageConfig
from .craq import Operator
from .lease import Lease
from .localstate import NodeHealth
from .resync import ResyncWorker
from .service import StorageServicer, add_storage_servicer
from .targets import open_targets

__all__ = ["GRACE_S", "IO_THREADS", "READY_PREFIX", "run", "serve"]

log = logging.getLogger("emberfs.storage")

GRACE_S = 2.0
IO_THREADS = 8
READY_PREFIX = "emberfs-storage listening on "
STORAGE_SERVICE_NAME = "emberfs.Storage"


async def serve(config: StorageConfig, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    # A plain handler, not loop.add_signal_handler: that one delivers the signal as a
    # byte on the loop's self-pipe, which thousands of I/O-thread completions can fill,
    # and then SIGTERM is lost (seen after a flood of bulk reads).
    previous = {signum: signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    keys = config.keys
    guard = AccessGuard(keys) if keys is not None else None
    keys_task: asyncio.Task[None] | None = None
    if keys is not None:
        previous[signal.SIGHUP] = signal.signal(
            signal.SIGHUP, lambda *_: loop.call_soon_threadsafe(lambda: keys.reload_if_changed(force=True)))
    stores = open_targets(config.data_dir, config.node_id, config.targets)
    executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="emberfs-io")
    tokens = config.tokens
    own_token = tokens.server_token if tokens is not None else None
    peers = StoragePool(token=own_token, tls_ca=config.tls_ca)
    agent: Agent | None = None
    bulk: BulkServer | None = None
    agent_task: asyncio.Task[None] | None = None
    resync_task: asyncio.Task[None] | None = None
    operator: Operator | None = None
    node_health = NodeHealth(Lease())
    server = grpc.aio.server(options=server_options(), interceptors=server_interceptors(tokens))
    try:
        host, port = parse_hostport(config.listen, what="--listen")
        bound = add_port(server, config.listen, config.tls)  # secure with --tls-cert/--tls-key
        if bound == 0 and port != 0:
            raise OSError(f"cannot listen on {config.listen}")
        address = f"{host}:{bound}"
        advertise = config.advertise or address
        agent = Agent(node_id=config.node_id, address=advertise, meta=config.meta_addresses, stores=stores,
                      executor=executor, interval_s=config.heartbeat_interval_s, health=node_health,
                      token=own_token, tls_ca=config.tls_ca)
        operator = Operator(config.node_id, stores, agent.routing, peers, executor, health=node_health)
        add_storage_servicer(StorageServicer(operator, guard), server)
        if config.bulk_port is not None:
            bulk = BulkServer(operator, stall_s=config.bulk_stall_s, tokens=tokens, guard=guard,
                              ssl_context=config.tls.ssl_context() if config.tls is not None else None)
            bulk_port = await bulk.start(host.strip("[]"), config.bulk_port)
            # Peers dial the advertised host (a container's service name) at the bound port.
            agent.bulk_address = f"{advertise.rpartition(':')[0]}:{bulk_port}"
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        await server.start()
        for name in ("", STORAGE_SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        print(f"{READY_PREFIX}{address}", flush=True)
        log.info("node %d serving %s (advertised %s, bulk channel %s), targets %s, metaservers %s, %s", config.node_id,
                 address, advertise, agent.bulk_address or "off", sorted(stores), config.meta,
                 f"tokens required ({len(tokens)} known)" if tokens is not None else "no tokens (open to all)")
        log.info("TLS: %s; calls the metaserver and peers %s", "on" if config.tls is not None else "off (plaintext)",
                 f"over TLS (CA {config.tls_ca})" if config.tls_ca else "in plaintext")
        if keys is not None:  # ids only: key bytes never reach a log
            log.info("capabilities required on client Read/Write: keys %s from %s", sorted(keys.keys.keys), keys.path)
        agent_task = loop.create_task(agent.run())
        if keys is not None:
            keys_task = loop.create_task(watch(keys))
        resync_task = loop.create_task(ResyncWorker(operator).run())
        await stop.wait()
        log.info("stopping")
        await health_servicer.enter_graceful_shutdown()
        agent_task.cancel()
        resync_task.cancel()
        await agent.farewell()
        await server.stop(GRACE_S)
        if bulk is not None:
            await bulk.close()
        try:  # updates whose callers gave up still finish their store work
            await asyncio.wait_for(operator.targets.drain(), GRACE_S)
        except TimeoutError:
            log.warning("updates still running after %.1f s; stopping anyway (they stay pending)", GRACE_S)
    finally:
        for task in (agent_task, resync_task, keys_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await server.stop(0)
        if bulk is not None:
            await bulk.close()
        if operator is not None:
            await operator.targets.cancel_all()
        if agent is not None:
            await agent.close()
        await peers.close()
        executor.shutdown(wait=True)
        for store in stores.values():
            store.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")


def run(config: StorageConfig) -> int:
    logging.basicConfig(level=config.log_level_number, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_malloc()
    try:
        eventloop.run(serve(config))
    except (OSError, lmdb.Error, EmberError) as exc:  # cannot bind, data dir refused
        log.error("%s", getattr(exc, "message", None) or exc)
        print(f"emberfs-storage: error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 1
    return 0
