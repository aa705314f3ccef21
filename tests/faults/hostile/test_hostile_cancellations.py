"""Writes cancelled at their deadline (raw Writes with 1-20 ms deadlines, a Client
with 100 ms per call) racing normal writers on the same chunks (the cluster, the load
and the verdict: conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._racing import RacingLoad
from ._slots import Shape
from ._verdict import HostileCluster

BIG_CHUNK = 1 << 20  # the cancellation scenario's: a prepare long enough to be cancelled inside
CANCEL_SECONDS = 15.0


def test_writes_cancelled_at_their_deadline_race_normal_writers(
        hostile_cluster: Callable[[int], HostileCluster], racing_load: list[RacingLoad]) -> None:
    """Raw Writes with 1-20 ms deadlines and a Client with 100 ms per call race 2
    normal writers on the same chunks for 15 s; then the verdict."""
    hostile = hostile_cluster(BIG_CHUNK)
    load = RacingLoad(hostile.meta, Shape(BIG_CHUNK), writers=2, cancellers=2, hasty=True,
                      witness_pause_s=0.3, whole_chunk_share=0.1).start()
    racing_load.append(load)
    load.wait_acks(20)
    time.sleep(CANCEL_SECONDS)
    report = load.stop()
    assert report.cancelled > 0, "no write was cancelled at its deadline: the scenario did not happen"
    hostile.verdict(report, name="writes cancelled at their deadline")
