"""The README's main job (scripts/demo.py) end to end on a small dataset: a real local
cluster, record shards written with a progress bar, one DataLoader epoch per row from
EmberFS, local files and nginx (block-shuffled and in random order), the results table
and the headline, and a clean stop; the same without nginx (its row says why); and a
Ctrl-C in the middle that still stops every server it started."""

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
BLOCK_LOADER = r"IterableRecordDataset\(shuffle=True\)\s+block-shuffled"
RANDOM_LOADER = r"RecordDataset, DataLoader\(shuffle=True\)\s+random order"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _row(table: str, source: str, loader: str, samples: int) -> re.Match[str] | None:
    return re.search(rf"^{re.escape(source)}\s+{loader}\s+{samples}\s+[\d.]+\s+[\d.]+\s+\d+\s+[\d.]+$", table,
                     re.M)


def _stopped_cleanly(stderr: str) -> None:
    # Every server exits 0 on its one SIGTERM, and every server it started is gone.
    assert "cluster stopped cleanly (4 processes exited 0)" in stderr, stderr[-2000:]
    pids = list(map(int, re.findall(r"\(pid (\d+)\)", stderr)))
    assert len(pids) == 4 and not [pid for pid in pids if _alive(pid)]


def test_demo_reads_through_a_data_loader_and_stops_cleanly(tmp_path: Path) -> None:
    # The demo installs nginx when it is missing and may (root on Debian), as the bench does.
    proc = subprocess.run([sys.executable, str(DEMO), *SMALL], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if "[demo] no nginx peer:" in proc.stderr:
        pytest.skip(proc.stderr.split("[demo] no nginx peer:")[1].splitlines()[0].strip())
    assert "100%" in proc.stderr and "in 0:" in proc.stderr  # the progress bar, on stderr
    table = proc.stdout
    assert "256 samples of 1-7 KiB" in table, table
    for source in ("EmberFS (3 nodes x 3 replicas)", "local files (same shards)"):
        assert _row(table, source, BLOCK_LOADER, 256), table
        assert _row(table, source, RANDOM_LOADER, 256), table
    assert _row(table, "nginx over HTTP (same shards)", BLOCK_LOADER, 256), table
    assert "larger than the 2 workers' caches together" in table and "NOT larger" not in table
    assert "page cache" in table and "counted exactly once" in table
    headline = re.search(r"^EmberFS, block-shuffled: ([\d.]+)x local files in random order \(goal >= 0.5x: "
                         r"(PASS|MISS)\) and ([\d.]+)x nginx, block-shuffled \(goal > 1x: (PASS|MISS)\); "
                         r"every sample arrived once", table, re.M)
    assert headline, table
    assert (headline[2] == "PASS") == (float(headline[1]) >= 0.5) or abs(float(headline[1]) - 0.5) < 0.01
    _stopped_cleanly(proc.stderr)
    nginx = re.search(r"nginx, pid (\d+), serves the local shards", proc.stderr)
    assert nginx and not _alive(int(nginx[1])), proc.stderr[-2000:]  # the peer the demo started is gone too


def test_demo_without_nginx_says_why_and_takes_sample_byte_ranges(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-nginx"
    proc = subprocess.run([sys.executable, str(DEMO), "--samples", "300", "--sample-bytes", "100-20000",
                           "--shards", "3", "--nginx", str(missing)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert "300 samples of 100 B-20000 B" in table, table
    assert _row(table, "EmberFS (3 nodes x 3 replicas)", BLOCK_LOADER, 300), table
    assert re.search(rf"^nginx over HTTP \(same shards\)\s+{BLOCK_LOADER}\s+unavailable: nginx not found at "
                     rf"{re.escape(str(missing))}", table, re.M), table
    assert re.search(r"^EmberFS, block-shuffled: [\d.]+x local files in random order .* and no figure for nginx "
                     r"\(nginx not found at ", table, re.M), table
    _stopped_cleanly(proc.stderr)


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
