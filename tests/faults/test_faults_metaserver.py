"""kill -9 the metaserver in the middle of continuous writes, restart it: the chain
table and the targets' states survive, writes resume, none acknowledged is lost."""

from __future__ import annotations

import time
from typing import Any


def test_kill_9_metaserver_mid_write_then_restart(fault_cluster: Any, workload: Any, timeline: Any) -> None:
    load = workload()
    load.wait_acks(30)
    before = fault_cluster.view()
    meta = fault_cluster.cluster.meta
    timeline.mark("kill")
    meta.kill()
    time.sleep(1.5)  # past the heartbeat timeout: a manager that forgot would fail every target
    meta.restart()
    timeline.mark("restart")
    load.wait_acks(30, timeout=60.0)
    time.sleep(max(0.0, timeline.marks["restart"] + 3.0 - time.monotonic()))  # 3 heartbeat timeouts
    after = fault_cluster.view()
    assert after.chains.keys() == before.chains.keys()
    for chain_id, chain in before.chains.items():
        # Same targets, same states, same version: the restart moved nothing.
        assert after.chain(chain_id) == chain, fault_cluster.describe()
    fault_cluster.wait_all_serving(timeout=30.0)
    report = load.stop()
    fault_cluster.assert_intact(report)
    # The writes in flight at the kill waited for the metaserver instead of failing.
    assert load.longest_stall(timeline.marks["kill"]) < 30.0, report.summary()


def test_metaserver_restart_keeps_an_offline_target_offline(fault_cluster: Any, workload: Any) -> None:
    """The chain states, not just the table: a target the manager took out stays out
    across its restart, and the chain keeps taking writes without it."""
    from emberfs.common.chainstate import PublicState

    load = workload()
    load.wait_acks(10)
    victim = fault_cluster.role("tail")
    server = fault_cluster.server_of(victim)
    server.kill()
    fault_cluster.wait_state(victim, PublicState.OFFLINE, timeout=10.0)
    version = fault_cluster.view().chain(fault_cluster.chain_id()).chain_version
    fault_cluster.cluster.meta.kill()
    fault_cluster.cluster.meta.restart()
    load.wait_acks(20, timeout=60.0)
    chain = fault_cluster.view().chain(fault_cluster.chain_id())
    assert chain.state_of(victim) == PublicState.OFFLINE
    assert chain.chain_version == version
    assert len(chain.serving) == 2
    report = load.stop()
    fault_cluster.assert_intact(report)
