"""kill -9 of each role of the chain, restarted at once inside the heartbeat timeout,
under racing writers (the cluster, the load and the verdict: conftest.py).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from ._racing import RacingLoad
from ._slots import Shape
from ._verdict import HEAL_S, HOSTILE_TIMEOUT_S, HostileCluster

CHUNK = 64 * 1024  # the kill scenario's chunk size (the fault suite's)
ROLES = ("head", "middle", "tail")
KILL_ROUNDS = 3  # each role killed this many times; rounds after the first freeze it first
FREEZE_S = 0.3


def test_kill_9_and_restart_at_once_each_role_under_racing_writers(
        hostile_cluster: Callable[[int], HostileCluster], racing_load: list[RacingLoad]) -> None:
    """kill -9 the head, the middle, the tail (3 times each), restarting it at once,
    while 3 writers overwrite the same chunks and a reader reads; then the verdict.

    In the first round the server is killed as it runs. In the others it dies in the
    window between its successors' commit and its own: its successor is frozen
    (SIGSTOP) for 0.3 s, so that writes reach the victim and wait there with their
    pending version; then the victim is frozen and its successor woken, which commits
    those writes down the chain while the victim cannot commit them or hear the acks;
    0.3 s later the victim is killed (-9) and restarted at once. (The tail has no
    successor: it is frozen 0.3 s, then killed.) All of it stays far inside the
    heartbeat timeout, so the manager never changes the chain."""
    hostile = hostile_cluster(CHUNK)
    load = RacingLoad(hostile.meta, Shape(CHUNK), writers=3).start()
    racing_load.append(load)
    load.wait_acks(20)
    kills, downtimes = 0, []
    for round_ in range(KILL_ROUNDS):
        for role in ROLES:
            hostile.wait_all_serving(HEAL_S)
            victim = hostile.role(role)
            server = hostile.server_of(victim)
            successor = hostile.view().chain(hostile.chain_id()).successor(victim)
            began = time.monotonic()
            if round_:
                _freeze_behind(hostile, server, successor)
            server.kill()  # a frozen process dies of SIGKILL too
            server.restart()
            downtimes.append(time.monotonic() - began)
            kills += 1
            load.wait_acks(15, timeout=45.0)
    report = load.stop()
    print(f"\nkill -9 -> listening again: {min(downtimes):.2f}-{max(downtimes):.2f} s "
          f"(heartbeat timeout {HOSTILE_TIMEOUT_S:g} s)")
    hostile.verdict(report, name="kill -9 + restart at once", kills=kills)


def _freeze_behind(hostile: HostileCluster, server: Any, successor: int | None) -> None:
    """Leave `server` frozen with writes its successors committed and it did not."""
    assert server.pid is not None
    if successor is None:
        os.kill(server.pid, signal.SIGSTOP)
        time.sleep(FREEZE_S)
        return
    follower = hostile.server_of(successor)
    assert follower.pid is not None
    os.kill(follower.pid, signal.SIGSTOP)
    try:
        time.sleep(FREEZE_S)
        os.kill(server.pid, signal.SIGSTOP)
    finally:
        os.kill(follower.pid, signal.SIGCONT)
    time.sleep(FREEZE_S)
