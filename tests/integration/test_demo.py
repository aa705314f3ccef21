"""The README's main job (scripts/demo.py) end to end on a small dataset: a real local
cluster, record shards written with a progress bar, one DataLoader epoch from EmberFS
and from local files, the results table, and a clean stop; and a Ctrl-C in the middle
that still stops every server it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"
pytestmark = pytest.mark.timeout(300)  # a whole demo per test: longer on a busy machine
SMALL = ["--samples", "256", "--sample-kib", "4", "--shards", "2", "--workers", "2", "--batch-size", "32"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_demo_reads_through_a_data_loader_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(DEMO), *SMALL], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "100%" in proc.stderr and "in 0:" in proc.stderr  # the progress bar, on stderr
    table = proc.stdout
    assert re.search(r"^EmberFS \(3 nodes x 3 replicas\)\s+256\s", table, re.M), table
    assert re.search(r"^local files \(same shards\)\s+256\s", table, re.M), table
    assert "samples/s" in table and "MiB/s" in table and "every sample arrived once" in table
    # Every server exits 0 on its one SIGTERM, and every server it started is gone.
    assert "cluster stopped cleanly (4 processes exited 0)" in proc.stderr, proc.stderr[-2000:]
    for pid in map(int, re.findall(r"\(pid (\d+)\)", proc.stderr)):
        assert not _alive(pid)


def test_ctrl_c_stops_the_cluster(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(DEMO), "--samples", "20000", "--sample-kib", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 120
    try:
        for line in proc.stderr:
            lines.append(line)
            if "every chain is serving" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)  # into the writes
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(lines) + rest
    assert proc.returncode == 130, stderr[-3000:]
    assert "[demo] interrupted" in stderr and "cluster stopped" in stderr
    pids = list(map(int, re.findall(r"\(pid (\d+)\)", stderr)))
    assert len(pids) == 4
    assert not [pid for pid in pids if _alive(pid)], "a server outlived the demo"
