"""`python -m emberfs.bench.serverio --quick`: the server read-strategy micro-benchmark
runs end to end (real server processes, loopback), reports a row for every strategy,
event loop, chunk size and in-flight limit (figures, or why it could not run), and
leaves no server process or data set behind."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emberfs.bench.serverio import LOOPS, STRATEGIES

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
# What this machine kind always has (Linux, Python 3.11+): these rows must carry figures.
ALWAYS = {("asyncio", s) for s in ("preadv-pool", "preadv-nowait", "pread-bytes", "pread-bytes-nofc",
                                   "loop.sendfile", "os.sendfile")}
if HAVE_UVLOOP:
    ALWAYS |= {("uvloop", s) for s in ("preadv-pool", "pread-bytes", "os.sendfile")}


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.bench
@pytest.mark.timeout(120)
def test_quick_run_reports_every_strategy(tmp_path: Path) -> None:
    out = tmp_path / "serverio.json"
    proc = subprocess.run(
        [sys.executable, "-m", "emberfs.bench.serverio", "--quick", "--json", str(out), "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=100, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[serverio] round 1/1" in proc.stderr  # progress on stderr, the table on stdout
    assert "Fastest and cheapest" in proc.stdout

    doc = json.loads(out.read_text())
    assert doc["parameters"]["quick"] is True and doc["parameters"]["rounds_done"] == 1
    rows = {(r["loop"], r["chunk_size"], r["in_flight"], r["strategy"]): r for r in doc["rows"]}
    assert set(rows) == {(loop, size, depth, s) for loop in LOOPS for size in (1 << 20, 4 << 20)
                         for depth in (4, 16) for s in STRATEGIES}
    for (loop, size, depth, strategy), row in rows.items():
        line = next(text for text in proc.stdout.splitlines()
                    if text.split()[:5] == [loop, str(size >> 20), "MiB", str(depth), strategy])
        if row["unavailable"]:
            assert (loop, strategy) not in ALWAYS, row["unavailable"]
            assert "unavailable: " in line
            continue
        assert row["samples"] and not row["errors"], (loop, size, depth, strategy, row["errors"])
        assert row["median_mib_s"] > 0 and row["median_server_cpu_s_per_gib"] >= 0, row
        assert row["median_client_cpu_s_per_gib"] >= 0, row
        assert f"{row['median_mib_s']:.0f}" in line
    if not HAVE_UVLOOP:
        assert all("uvloop is not installed" in r["unavailable"] for k, r in rows.items() if k[0] == "uvloop")

    # Every server stopped and the data set removed, whatever happened.
    assert _processes_mentioning(str(tmp_path)) == []
    assert not any(p.name.startswith("emberfs-serverio-") for p in tmp_path.iterdir())
