"""kill -9 two of the three servers under continuous writes: the one left serves
alone (reads and writes); restart both: each resyncs, the chain is whole again, no
acknowledged write is lost, and each restarted server alone serves every file."""

from __future__ import annotations

from typing import Any


from emberfs.common.chainstate import PublicState


def test_kill_9_two_of_three_then_restart_both(fault_cluster: Any, workload: Any, timeline: Any) -> None:
    load = workload()
    load.wait_acks(20)
    head, tail = fault_cluster.role("head"), fault_cluster.role("tail")
    victims = [fault_cluster.server_of(head), fault_cluster.server_of(tail)]
    timeline.mark("kill")
    for server in victims:
        server.kill()
    fault_cluster.wait_state(head, PublicState.OFFLINE, timeout=10.0)
    fault_cluster.wait_state(tail, PublicState.OFFLINE, timeout=10.0)
    load.wait_acks(20, timeout=30.0)  # one replica left takes writes
    timeline.mark("restart")
    for server in victims:
        server.restart()
    fault_cluster.wait_all_serving()
    load.wait_acks(20, timeout=30.0)
    report = load.stop()
    fault_cluster.assert_intact(report)
    assert load.longest_stall(timeline.marks["kill"], timeline.marks["restart"]) < 15.0, report.summary()
    # Both were down while files were written; the first restarted alone serves them all.
    fault_cluster.assert_alone_serves(victims[0], report.files)


def test_kill_9_all_three_last_serving_returns_first(fault_cluster: Any, workload: Any) -> None:
    """Kill the servers one by one: the last one serving (LASTSRV) holds the newest data;
    restarted first it serves again, and the others resync from it."""
    load = workload()
    load.wait_acks(20)
    order = [fault_cluster.role("tail"), fault_cluster.role("middle"), fault_cluster.role("head")]
    servers = [fault_cluster.server_of(t) for t in order]
    for target, server in zip(order[:2], servers[:2], strict=True):
        server.kill()
        fault_cluster.wait_state(target, PublicState.OFFLINE, timeout=10.0)
        load.wait_acks(10, timeout=30.0)
    report = load.stop()
    servers[2].kill()
    fault_cluster.wait_state(order[2], PublicState.LASTSRV, timeout=10.0)
    servers[2].restart()
    fault_cluster.wait_state(order[2], PublicState.SERVING, timeout=30.0)
    assert not fault_cluster.mismatches(report.files)  # the last one alone has everything
    for server in servers[:2]:
        server.restart()
    fault_cluster.wait_all_serving()
    fault_cluster.assert_intact(report)
    fault_cluster.assert_alone_serves(servers[0], report.files)
