"""`emberfs admin offline-target` under continuous writes takes a target out (its server
keeps running and heartbeating); `online-target` lets it rejoin through a resync."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from emberfs.common.chainstate import PublicState


def _admin(meta: str, action: str, target: int) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "emberfs.client.cli", "--meta", meta, "admin", action, str(target)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr


def test_admin_offline_then_online_a_middle_target(fault_cluster: Any, workload: Any) -> None:
    load = workload()
    load.wait_acks(20)
    victim = fault_cluster.role("middle")
    server = fault_cluster.server_of(victim)
    _admin(fault_cluster.meta, "offline-target", victim)
    fault_cluster.wait_state(victim, PublicState.OFFLINE, timeout=5.0)
    load.wait_acks(20, timeout=30.0)
    time.sleep(1.5)  # its server beats on; only the admin mark keeps it out
    assert fault_cluster.state_of(victim) == PublicState.OFFLINE
    assert server.running
    _admin(fault_cluster.meta, "online-target", victim)
    fault_cluster.wait_all_serving()
    load.wait_acks(20, timeout=30.0)
    report = load.stop()
    fault_cluster.assert_intact(report)
    fault_cluster.assert_alone_serves(server, report.files)
