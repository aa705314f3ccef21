"""`emberfs bench --quick` end to end: a real 3-node cluster and every baseline (the
harness installs Debian's nginx when it is missing and it may; aiohttp comes with the
bench extra the test environment installs), checking that the JSON holds every row
with sane, positive figures (both transports, read_into beside read_file), the goals
block, and a PNG plot. The data-loader workload runs torch's DataLoader (the torch
extra); without torch its rows must say how to install it. A second, shorter run
measures the seq phases on an asyncio and a uvloop cluster, the harness itself on
uvloop; without uvloop installed its rows must say how to install it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emberfs.bench.epoch import BLOCK, RANDOM
from emberfs.bench.measure import EMBERFS, LOCAL, WIRE
from emberfs.bench.meta import META_WORKLOADS

SCRIPT = Path(sys.executable).parent / "emberfs"
SYSTEMS = {"seq write": {"local disk"}, "seq read": {"page cache", "raw socket", "nginx + aiohttp"}}
CHUNKS = ("emberfs 1 MiB chunks", "emberfs 4 MiB chunks")
LOADER_SIZES = ("4-28 KiB",)  # the default sample-size range
LOADER_BASELINES = {f"local files, {RANDOM}", f"local files, {BLOCK}", f"nginx + http.client, {BLOCK}"}
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def emberfs_systems(workload: str) -> set[str]:
    """The EmberFS rows of a data workload in a default-transport run (bulk first, then grpc)."""
    if workload.startswith("loader"):
        return {f"{c}, bulk, {order}" for c in CHUNKS for order in (BLOCK, RANDOM)}  # the first transport only
    systems = {f"{c}, {t}" for c in CHUNKS for t in ("bulk", "grpc")}  # read_into / read_range / write_file
    if workload == "seq read":
        systems |= {f"{c}, bulk, read_file" for c in CHUNKS}
    elif workload.startswith("rand read"):
        systems |= {f"{c}, bulk, pread" for c in CHUNKS}
    return systems


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
    assert "vs nginx" in proc.stdout and "emberfs 1 MiB chunks, bulk" in proc.stdout
    assert "emberfs 4 MiB chunks, grpc" in proc.stdout and "goals of issues 8 and 17" in proc.stdout

    doc = json.loads(out_json.read_text())
    assert doc["parameters"]["quick"] is True and doc["parameters"]["chunk_sizes"] == [1 << 20, 4 << 20]
    assert doc["parameters"]["transports"] == ["bulk", "grpc"] and doc["parameters"]["event_loops"] == ["asyncio"]
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
            systems = emberfs_systems(workload) | LOADER_BASELINES
            if not HAVE_TORCH:
                for system in systems:
                    assert "pip install 'emberfs[torch]'" in index[(workload, depth, system)]["unavailable"]
                continue
        elif workload in META_WORKLOADS:
            systems = {"emberfs", "grpc health", "lmdb"}
        else:
            systems = emberfs_systems(workload) | SYSTEMS.get(workload, {"page cache", "raw socket", "nginx + aiohttp"})
        mine = {r["system"] for r in rows if (r["workload"], r["in_flight"]) == (workload, depth)
                and r["role"] == EMBERFS}
        assert mine <= systems, f"unexpected EmberFS rows in {workload} x{depth}: {mine - systems}"
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
                if workload not in META_WORKLOADS:  # the labels say what the fields say
                    assert system.split(", ")[1] == row["transport"] and row["event_loop"] == "asyncio", row

    # The headline seq read fills one buffer with read_into, on either transport; read_file beside it.
    for chunks in CHUNKS:
        for transport in ("bulk", "grpc"):
            assert index[("seq read", 0, f"{chunks}, {transport}")]["api"] == "read_into"
        assert index[("seq read", 0, f"{chunks}, bulk, read_file")]["api"] == "read_file"

    # Every EmberFS figure has its ratio to the local and wire baselines of the same run.
    ratio_rows = doc["ratios"]
    assert len(ratio_rows) == sum(1 for r in rows if r["role"] == EMBERFS and r["value"] is not None)
    for record in ratio_rows:
        if record["workload"] != "seq write" and not record["workload"].startswith("loader"):
            assert record[f"vs_{WIRE}"] > 0, record  # a write and a data loader have no wire baseline
        assert record[f"vs_{LOCAL}"] > 0, record

    # The loader's own table and JSON records: one whole epoch per row (every sample of the
    # dataset, once), samples/s beside MiB/s, EmberFS against local files and nginx.
    assert "samples/s" in proc.stdout and "data loader: one shuffled epoch per row" in proc.stdout
    loader = doc["loader"]
    assert {(r["sample_size"], r["system"]) for r in loader} == {
        (s, system) for s in LOADER_SIZES for system in (*emberfs_systems("loader"), *LOADER_BASELINES)}
    if HAVE_TORCH:
        assert len({r["samples"] for r in loader}) == 1, loader  # the same epoch everywhere
        for record in loader:
            assert record["samples_per_s"] > 0 and record["mib_per_s"] > 0, record
            assert record["system"].endswith(record["order"]) and "page cache" in record["detail"], record
            assert 0 < record["first_batch_s"] <= record["seconds"], record
            mine = record["system"].startswith("emberfs")
            assert (record["vs_local"] is not None) == mine and (record["vs_peer"] is not None) == mine, record
    assert out_png.read_bytes().startswith(b"\x89PNG")

    # The goals of issue 8, each measured, with its ratio and verdict, in the JSON and after the table.
    goals = {g["workload"]: g for g in doc["goals"]}
    expected_goals = {"seq read", "rand read 64 KiB x32", "seq write"}
    expected_goals |= {f"loader {s}" for s in LOADER_SIZES} if HAVE_TORCH else set()
    assert expected_goals <= set(goals), doc["goals"]
    for goal in doc["goals"]:
        if goal["workload"].startswith("loader") and not HAVE_TORCH:
            assert goal["verdict"] == "n/a", goal
            continue
        assert goal["ratio"] > 0 and goal["system"].startswith("emberfs"), goal
        assert goal["verdict"] == ("info" if goal["target"] is None else
                                   "PASS" if goal["ratio"] >= goal["target"] else "MISS"), goal
        assert goal["cpu_s_per_gib"][0] >= 0, goal
        assert f"{goal['verdict']:<5} {goal['goal']}" in proc.stdout
    seq_goals = [g for g in doc["goals"] if g["workload"] == "seq read"]
    assert {g["baseline"] for g in seq_goals} == {"nginx + aiohttp", "raw socket"}
    if HAVE_TORCH:  # block-shuffled >= 0.8x and random order >= 0.4x local files in random order; nginx: info
        loader_goals = [(g["target"], g["baseline"]) for g in doc["goals"] if g["workload"] == "loader 4-28 KiB"]
        assert loader_goals == [(0.8, f"local files, {RANDOM}"), (0.4, f"local files, {RANDOM}"),
                                (None, f"nginx + http.client, {BLOCK}")]
    assert proc.stdout.index("goals of issues 8 and 17") > proc.stdout.index("vs nginx")


@pytest.mark.bench
def test_quick_run_with_two_event_loops(tmp_path: Path) -> None:
    """One cluster per event loop, rows labelled with it; the harness's own loop is
    EMBERFS_EVENT_LOOP's. Without uvloop, the uvloop rows say how to install it."""
    out_json = tmp_path / "bench.json"
    env = {**os.environ, "EMBERFS_EVENT_LOOP": "uvloop" if HAVE_UVLOOP else "asyncio"}
    proc = subprocess.run(
        [sys.executable, "-m", "emberfs.bench", "--quick", "--seconds", "0.1", "--workloads", "seq",
         "--transports", "bulk", "--event-loops", "asyncio,uvloop", "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out_json.read_text())
    assert doc["machine"]["harness_loop"] == ("uvloop" if HAVE_UVLOOP else "asyncio")
    index = {(r["workload"], r["system"]): r for r in doc["rows"]}
    for loop in ("asyncio", "uvloop"):
        for workload, system in (("seq write", f"emberfs 4 MiB chunks, bulk, {loop}"),
                                 ("seq read", f"emberfs 4 MiB chunks, bulk, {loop}"),
                                 ("seq read", f"emberfs 4 MiB chunks, bulk, {loop}, read_file")):
            row = index[(workload, system)]
            assert row["event_loop"] == loop, row
            if loop == "uvloop" and not HAVE_UVLOOP:
                assert "pip install 'emberfs[fast]'" in row["unavailable"], row
            else:
                assert not row["unavailable"] and row["value"] > 0, row
    assert not any(r["transport"] == "grpc" for r in doc["rows"])
