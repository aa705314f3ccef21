"""`python -m emberfs.bench.mgmtsim` end to end at a small size: a real metaserver,
50 simulated nodes in two worker processes, every phase reached and the figures
sane (nobody declared dead but the silenced tenth, every target serving again)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.bench
def test_small_simulation_reaches_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    proc = subprocess.run(
        [sys.executable, "-m", "emberfs.bench.mgmtsim", "--nodes", "50", "--targets", "4", "--seconds", "3",
         "--procs", "2", "--heartbeat-interval", "0.5", "--heartbeat-timeout", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[mgmtsim] silencing 5 nodes" in proc.stderr
    assert "| 50 × 4 |" in proc.stdout and "simulator CPU" in proc.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert row["registered"] == 50 and row["register_s"] > 0
    assert row["chains"] > 0 and row["init_chains_s"] > 0
    assert row["beats"] > 50 and 0 < row["beat_p50_ms"] <= row["beat_p99_ms"]
    assert row["manager_cores"] > 0 and row["simulator_cores"] > 0
    assert row["false_deaths"] == 0 and row["not_serving_at_end"] == 0
    assert row["routing_bytes"] > 1000 and row["routing_fetches"] >= 50
    assert row["silenced"] == 5 and 0 < row["detect_s"] < 2 + 10
    assert row["recover_s"] is not None and row["notes"] == []
