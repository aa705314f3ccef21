"""The cluster manager's and GC's settings: MetaConfig validation and emberfs-meta flags."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emberfs.common.errors import InvalidArgument
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.mgmt.manager import MAX_TICK_S, MIN_TICK_S, ClusterManager
from emberfs.metaserver.store import MetaStore


def test_sub_second_values_are_accepted() -> None:
    config = MetaConfig(data_dir="/d", heartbeat_interval_s=0.05, heartbeat_timeout_s=0.2, gc_interval_s=0.01)
    assert (config.heartbeat_interval_s, config.heartbeat_timeout_s, config.gc_interval_s) == (0.05, 0.2, 0.01)
    assert MetaConfig(data_dir="/d").gc_interval_s == 1.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"gc_interval_s": 0},
        {"gc_interval_s": -1},
        {"gc_interval_s": math.nan},
        {"gc_interval_s": math.inf},
        {"heartbeat_interval_s": 0},
        {"heartbeat_interval_s": 1.0, "heartbeat_timeout_s": 1.0},
        {"heartbeat_timeout_s": math.inf},
        {"heartbeat_interval_s": math.nan},
    ],
)
def test_invalid_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        MetaConfig(**{"data_dir": "/d", **overrides})


@pytest.mark.parametrize("interval,tick", [(0.001, MIN_TICK_S), (0.2, 0.1), (10.0, MAX_TICK_S)])
def test_tick_runs_every_half_interval_within_bounds(tmp_path: Path, interval: float, tick: float) -> None:
    config = MetaConfig(data_dir=str(tmp_path / "m"), heartbeat_interval_s=interval, heartbeat_timeout_s=interval * 5)
    with MetaStore(config) as store:
        assert ClusterManager(store, config).tick_interval_s == tick


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--gc-interval", "0"], "gc_interval_s"),
        (["--heartbeat-interval", "2", "--heartbeat-timeout", "1"], "heartbeat"),
        (["--heartbeat-timeout", "soon"], "invalid float"),
    ],
)
def test_bad_flags_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "emberfs.metaserver", "--data-dir", str(tmp_path / "m"), *flags],
        capture_output=True, text=True, timeout=20,
    )
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""
