"""The bulk channel of a real storage server, spoken to byte by byte (issue 8, "Bad input").

    bulk  BulkCluster, once with the storage servers on the standard event loop and
          once on uvloop: a metaserver and two storage servers (one chain of two
          replicas, 64 KiB chunks) whose bulk channels cut off a silent peer after
          STALL_S, with ORIGINAL written at PATH. One per loop for the whole directory
          (package scope), so every test leaves the server serving (assert_serves) and
          writes its own scratch chunks.

The tests open raw TCP connections to the chain head's bulk port (_peer.py) and check
what it answers, by concern: the streams it closes (test_bulk_streams.py), the requests
it refuses and goes on (test_bulk_refusals.py), pipelining and the two transports
(test_bulk_pipelining.py), and the memory a peer can make it hold
(test_bulk_memory.py).
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator

import pytest

from emberfs.client import Client
from emberfs.client._admin import init_chains_sync, wait_cluster_sync
from emberfs.client._launch import ServerProcess, metaserver_process, storage_process
from emberfs.common import eventloop
from emberfs.common.routing import RoutingView

from ._peer import CHUNK, ORIGINAL, PATH, STALL_S, BulkCluster, Spot, run

# The storage servers' event loop: the bulk server runs on the standard loop's transports or uvloop's.
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (emberfs[fast])"))]


@pytest.fixture(scope="package", params=LOOPS)
def bulk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BulkCluster]:
    root = tmp_path_factory.mktemp("bulk")
    meta = metaserver_process(root / "meta", extra_args=["--default-chunk-size", str(CHUNK),
                                                         "--heartbeat-timeout", "15"])
    nodes: list[ServerProcess] = []
    try:
        address = meta.start(timeout=20)
        for node_id in (1, 2):
            nodes.append(storage_process(root / f"node-{node_id}", meta=address, node_id=node_id,
                                         heartbeat_interval=0.2,
                                         extra_args=["--bulk-stall-timeout", str(STALL_S)]))
            nodes[-1].env = {**os.environ, eventloop.ENV: request.param}
            nodes[-1].start(timeout=20)
        deadline = time.monotonic() + 30
        wait_cluster_sync(address, deadline, nodes=2)
        init_chains_sync(address, 2, deadline)
        wait_cluster_sync(address, deadline, serving=True)
        spot, head_address = run(_write_original(address))
        head_pid = next(p.pid for p in nodes if p.address == head_address)
        assert head_pid is not None
        assert _runs_uvloop(head_pid) == (request.param == "uvloop"), "the server is not on the loop asked for"
        yield BulkCluster(meta, nodes, spot, head_pid)
    finally:
        codes = [(proc, proc.stop(grace=10)) for proc in nodes]
        meta.stop(grace=10)
        for proc, code in codes:  # a clean SIGTERM exit, after all that the tests sent
            assert code == 0, f"storage server exited with {code}:\n{proc.log_tail()}"


async def _write_original(meta: str) -> tuple[Spot, str]:
    async with Client(meta, uid=0, gid=0, groups=[], transport="grpc") as fs:
        await fs.write_file(PATH, ORIGINAL)
        st = await fs.stat(PATH)
        view = RoutingView(await fs.routing())
    chain = view.chain(st.chain_ids[0])
    assert chain.head is not None
    bulk = view.bulk_address_of(chain.head)
    assert bulk, "the chain head's server advertises no bulk address"
    return Spot(bulk, chain.chain_id, chain.chain_version, st.st_ino), view.address_of(chain.head)


def _runs_uvloop(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "uvloop" in maps.read()

