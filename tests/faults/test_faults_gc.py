"""Chunk GC started while a node is down completes when it returns: files removed
while its target was offline leave no chunk behind on it, and the files kept are
whole on it. No background workload here: the test counts chunks exactly."""

from __future__ import annotations

from typing import Any

from emberfs.client import SyncClient
from emberfs.common.chainstate import PublicState

CHUNK = 64 * 1024
FILES = 4
CHUNKS_PER_FILE = 3


def _chunks(view: Any, target_id: int) -> int:
    return int(view.targets[target_id].chunks)


def test_gc_while_a_node_is_down_completes_when_it_returns(fault_cluster: Any) -> None:
    kept = {f"/kept-{i}": bytes([i + 1]) * (CHUNKS_PER_FILE * CHUNK) for i in range(FILES)}
    doomed = {f"/doomed-{i}": bytes([i + 101]) * (CHUNKS_PER_FILE * CHUNK) for i in range(FILES)}
    with SyncClient(fault_cluster.meta, uid=0, gid=0, groups=[]) as fs:
        for path, data in {**kept, **doomed}.items():
            fs.write_file(path, data)
    everything = len(kept) * CHUNKS_PER_FILE + len(doomed) * CHUNKS_PER_FILE
    targets = list(fault_cluster.view().targets)
    fault_cluster.wait_for(
        f"every target reports {everything} chunks",
        lambda view: all(_chunks(view, t) == everything for t in targets), timeout=10.0,
    )
    victim = fault_cluster.role("tail")
    server = fault_cluster.server_of(victim)
    server.kill()
    fault_cluster.wait_state(victim, PublicState.OFFLINE, timeout=10.0)
    with SyncClient(fault_cluster.meta, uid=0, gid=0, groups=[]) as fs:
        for path in doomed:
            fs.remove(path)
    left = len(kept) * CHUNKS_PER_FILE
    live = [t for t in targets if t != victim]
    fault_cluster.wait_for(
        f"live targets {live} down to {left} chunks",
        lambda view: all(_chunks(view, t) == left for t in live), timeout=20.0,
    )
    server.restart()
    fault_cluster.wait_for(
        f"returned target {victim} down to {left} chunks",
        lambda view: _chunks(view, victim) == left, timeout=30.0,
    )
    fault_cluster.wait_all_serving()
    assert not fault_cluster.mismatches(kept)
    fault_cluster.assert_alone_serves(server, kept)
    assert _chunks(fault_cluster.view(), victim) == left
