"""`emberfs bench --quick` end to end: a real 3-node cluster and every baseline (the
harness installs Debian's nginx when it is missing and it may; aiohttp comes with the
bench extra the test environment installs), checking that the JSON holds every row
with sane, positive figures, and a PNG plot. The data-loader workload runs torch's
DataLoader (the torch extra); without torch its rows must say how to install it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from emberfs.bench.measure import EMBERFS, LOCAL, WIRE
from emberfs.bench.meta import META_WORKLOADS

SCRIPT = Path(sys.executable).parent / "emberfs"
SYSTEMS = {"seq write": {"local disk"}, "seq read": {"page cache", "raw socket", "nginx + aiohttp"}}
LOADER_SIZES = ("1 KiB", "16 KiB", "256 KiB")
HAVE_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.bench
def test_quick_run_reports_every_row(tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [str(SCRIPT), "bench", "--quick", "--seconds", "0.1", "--chunk-size", "1M,4M",
         "--json", str(out_json), "--plot", str(out_png)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[bench] sequential read" in proc.stderr  # progress on stderr, the table on stdout
    assert "vs nginx" in proc.stdout and "emberfs 1 MiB chunks" in proc.stdout

    doc = json.loads(out_json.read_text())
    assert doc["parameters"]["quick"] is True and doc["parameters"]["chunk_sizes"] == [1 << 20, 4 << 20]
    assert doc["machine"]["cpus"] >= 1
    rows = doc["rows"]
    index = {(r["workload"], r["in_flight"], r["system"]): r for r in rows}

    expected = {("seq write", 0), ("seq read", 0)}
    expected |= {(f"rand read {s}", d) for s in ("4 KiB", "64 KiB", "1 MiB") for d in (1, 32)}
    expected |= {(w, d) for w in META_WORKLOADS for d in (1, 32)}
    expected |= {(f"loader {s}", 2) for s in LOADER_SIZES}  # 2 DataLoader workers
    assert {(r["workload"], r["in_flight"]) for r in rows} == expected

    for workload, depth in expected:
        if workload.startswith("loader"):
            systems = {"emberfs 1 MiB chunks", "emberfs 4 MiB chunks", "local files"}
            if not HAVE_TORCH:
                for system in systems:
                    assert "pip install 'emberfs[torch]'" in index[(workload, depth, system)]["unavailable"]
                continue
        elif workload in META_WORKLOADS:
            systems = {"emberfs", "grpc health", "lmdb"}
        else:
            systems = {"emberfs 1 MiB chunks", "emberfs 4 MiB chunks"}
            if workload.startswith("rand read"):  # read_range, and pread on an open handle
                systems |= {"emberfs 1 MiB chunks, pread", "emberfs 4 MiB chunks, pread"}
            systems |= SYSTEMS.get(workload, {"page cache", "raw socket", "nginx + aiohttp"})
        for system in systems:
            row = index.get((workload, depth, system))
            assert row is not None, f"no row for {system} in {workload} x{depth}"
            assert not row["unavailable"], row
            assert row["value"] > 0 and row["seconds"] > 0 and row["ops"] > 0, row
            assert row["cpu_client_s"] >= 0
            if row["unit"] == "MiB/s":
                assert row["nbytes"] > 0, row
            if row["role"] == EMBERFS:
                assert row["cpu_server_s"] is not None and row["cpu_server_s"] >= 0

    # Every EmberFS figure has its ratio to the local and wire baselines of the same run.
    ratio_rows = doc["ratios"]
    assert len(ratio_rows) == sum(1 for r in rows if r["role"] == EMBERFS and r["value"] is not None)
    for record in ratio_rows:
        if record["workload"] != "seq write" and not record["workload"].startswith("loader"):
            assert record[f"vs_{WIRE}"] > 0, record  # a write and a data loader have no wire baseline
        assert record[f"vs_{LOCAL}"] > 0, record

    # The loader's own table and JSON records: samples/s beside MiB/s, EmberFS against local files.
    assert "samples/s" in proc.stdout and "data loader:" in proc.stdout
    loader = doc["loader"]
    assert {(r["sample_size"], r["system"]) for r in loader} == {
        (s, system) for s in LOADER_SIZES for system in ("emberfs 1 MiB chunks", "emberfs 4 MiB chunks", "local files")}
    if HAVE_TORCH:
        for record in loader:
            assert record["samples_per_s"] > 0 and record["mib_per_s"] > 0, record
            assert (record["vs_local"] is not None) == record["system"].startswith("emberfs"), record
    assert out_png.read_bytes().startswith(b"\x89PNG")
