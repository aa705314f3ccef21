"""kill -9 the head, a middle or the tail of a chain under continuous writes; then
restart it: writes go on over the shortened chain, the returning target resyncs and
serves, no acknowledged write is lost, and the restarted server alone serves every
file, those written while it was down included."""

from __future__ import annotations

from typing import Any

import pytest

from emberfs.common.chainstate import PublicState


@pytest.mark.parametrize("role", ["head", "middle", "tail"])
def test_kill_9_one_role_then_restart(fault_cluster: Any, workload: Any, timeline: Any, role: str) -> None:
    load = workload()
    load.wait_acks(20)
    victim = fault_cluster.role(role)
    server = fault_cluster.server_of(victim)
    timeline.mark("kill")
    server.kill()
    fault_cluster.wait_state(victim, PublicState.OFFLINE, timeout=10.0)
    load.wait_acks(20, timeout=30.0)  # the shortened chain takes writes
    assert fault_cluster.view().chain(fault_cluster.chain_id()).state_of(victim) == PublicState.OFFLINE
    timeline.mark("restart")
    server.restart()
    fault_cluster.wait_all_serving()
    load.wait_acks(20, timeout=30.0)  # and the healed chain too
    report = load.stop()
    fault_cluster.assert_intact(report)
    assert load.longest_stall(timeline.marks["kill"], timeline.marks["restart"]) < 15.0, report.summary()
    fault_cluster.assert_alone_serves(server, report.files)
