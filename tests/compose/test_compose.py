"""EmberFS under docker-compose, as users run it, built here without a registry.

In order, on one stack (the session fixture `compose`): every chain serves after `up`
with chains made by the init service alone, and a second `up` changes nothing; files
written and read back through the client container (the figures); `docker kill` of a
storage container while readers run (reads go on); `docker start` of it (resync, every
target SERVING again: the time is a figure); `docker network disconnect` of another
(treated as a failure, reads go on) and reconnect (resync again); a meta container
restart (namespace and data intact); `down -v` leaves nothing behind.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

# The fixture's class, by its fixture only: test modules import no conftest
# (--import-mode=importlib).
ComposeCluster = Any

MIB = 1024 * 1024
DATASET = ["--dir", "/compose/data", "--files", "16", "--size", str(4 * MIB), "--seed", "1"]
HEARTBEAT_TIMEOUT_S = 5.0  # docker-compose.yml's default EMBERFS_HEARTBEAT_TIMEOUT


def _reads_after(result: dict, moment: float) -> int:
    return sum(1 for t in result["read_times"] if t > moment)


def _assert_reads_went_on(result: dict, moment: float, what: str) -> None:
    assert result["mismatches"] == 0, result
    assert result["failure_count"] == 0, f"reads failed after {what}: {result['failures']}"
    assert _reads_after(result, moment) > 0, f"no read completed after {what}"
    assert _reads_after(result, moment + 2 * HEARTBEAT_TIMEOUT_S) > 0, f"reads stopped after {what}"


@pytest.mark.timeout(1800)  # the first test also pays for the engine, the images and `up`
def test_up_serves_with_chains_made_by_init(compose: ComposeCluster) -> None:
    routing = compose.routing()
    assert sorted((n["node_id"], n["address"], n["alive"]) for n in routing["nodes"]) == [
        (1, "storage1:8000", True), (2, "storage2:8000", True), (3, "storage3:8000", True)]
    assert routing["chains"], "the init service created no chains"
    assert all(t["public_state"] == "SERVING" for c in routing["chains"] for t in c["targets"])
    chains = routing["chains"]

    # The issue's own commands, each in a new client container.
    ls = compose.compose("run", "--rm", "-T", "client", "emberfs", "ls", "/", timeout=120)
    assert ls.returncode == 0
    py = compose.compose("run", "--rm", "-T", "client", "python", "-c",
                         "import emberfs.client, sys; print(sys.version_info[:2])", timeout=120)
    assert "(3, 11)" in py.stdout
    # Namespace and cluster commands from the host, through the published meta port.
    host = subprocess.run([sys.executable, "-m", "emberfs.client.cli", "--meta", f"127.0.0.1:{compose.meta_port}",
                           "--timeout", "10", "cluster"], capture_output=True, text=True, timeout=60)
    assert host.returncode == 0 and "storage1:8000" in host.stdout, host.stdout + host.stderr

    # A second `up` runs init again: idempotent, the chain table is unchanged.
    compose.compose("up", "-d", timeout=240)
    deadline = time.monotonic() + 120
    cid = compose.container("init")
    while compose.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid).split() != ["exited", "0"]:
        assert time.monotonic() < deadline, "init did not finish after the second up"
        time.sleep(1)
    assert "chains already existed" in compose.compose("logs", "--no-color", "init", timeout=60).stdout
    assert compose.routing()["chains"] == chains


@pytest.mark.timeout(300)
def test_write_and_read_through_the_client_container(compose: ComposeCluster) -> None:
    result = compose.workload("write", *DATASET, timeout=240)
    assert result["mismatches"] == 0, result
    compose.figures["client_write"] = {k: result[k] for k in ("bytes", "write_s", "write_mib_s")}
    compose.figures["client_read"] = {k: result[k] for k in ("bytes", "read_s", "read_mib_s")}
    compose.say(f"client container: wrote {result['bytes'] // MIB} MiB at {result['write_mib_s']} MiB/s, "
                f"read it back at {result['read_mib_s']} MiB/s")

    # The CLI in a fresh container, bytes from the host's stdin and back to its stdout.
    blob = bytes(range(256)) * (64 * 1024)  # 16 MiB
    start = time.monotonic()
    put = subprocess.run([*compose.compose_cmd, "run", "--rm", "-T", "client", "emberfs", "put", "-q", "-",
                          "/compose/cli.bin"], input=blob, capture_output=True, env=compose.env, timeout=180)
    put_s = time.monotonic() - start
    assert put.returncode == 0, put.stderr
    start = time.monotonic()
    cat = subprocess.run([*compose.compose_cmd, "run", "--rm", "-T", "client", "emberfs", "cat", "/compose/cli.bin"],
                         capture_output=True, env=compose.env, timeout=180)
    cat_s = time.monotonic() - start
    assert cat.returncode == 0 and cat.stdout == blob, cat.stderr
    compose.figures["cli_put_16mib_run_rm_s"] = round(put_s, 2)
    compose.figures["cli_cat_16mib_run_rm_s"] = round(cat_s, 2)


@pytest.mark.timeout(300)
def test_docker_kill_of_a_storage_container_during_reads(compose: ComposeCluster) -> None:
    victim = compose.targets_of(2)
    reader = compose.start_readers(*DATASET, "--duration", "16")
    time.sleep(2)
    killed_at = time.monotonic()
    compose.docker("kill", compose.container("storage2"))
    compose.say("killed storage2 during reads")
    offline_s = compose.wait_targets(victim, "OFFLINE", timeout=4 * HEARTBEAT_TIMEOUT_S)
    result = compose.finish_workload(reader, timeout=120)
    _assert_reads_went_on(result, killed_at, "docker kill storage2")
    compose.figures["kill_storage"] = {
        "reads": result["reads"], "reads_before_kill": result["reads"] - _reads_after(result, killed_at),
        "reads_after_kill": _reads_after(result, killed_at),
        "longest_read_gap_s": result["longest_gap_s"], "target_offline_after_s": round(offline_s, 1),
    }


@pytest.mark.timeout(300)
def test_started_again_it_resyncs_and_all_serve(compose: ComposeCluster) -> None:
    # Written while storage2 is down, so its target has real data to catch up on.
    missed = ["--dir", "/compose/while-down", "--files", "8", "--size", str(4 * MIB), "--seed", "2"]
    assert compose.workload("write", *missed, timeout=180)["mismatches"] == 0
    assert "OFFLINE" in compose.target_states().values()

    started = time.monotonic()
    compose.docker("start", compose.container("storage2"))
    compose.wait_all_serving(timeout=120)
    serving_s = time.monotonic() - started  # from `docker start`, container start included
    compose.figures["restart_to_all_serving_s"] = round(serving_s, 1)
    compose.say(f"storage2 started again: every target SERVING after {serving_s:.1f} s")

    _assert_replicas_agree(compose)
    for dataset in (DATASET, missed):
        assert compose.workload("verify", *dataset, timeout=120) == {
            "files": int(dataset[dataset.index("--files") + 1]), "mismatches": 0, "failures": 0}


@pytest.mark.timeout(300)
def test_network_disconnect_is_a_failure_and_reconnect_resyncs(compose: ComposeCluster) -> None:
    victim = compose.targets_of(3)
    container = compose.container("storage3")
    network = compose.network()
    reader = compose.start_readers(*DATASET, "--duration", "20")
    time.sleep(2)
    cut_at = time.monotonic()
    compose.docker("network", "disconnect", network, container)
    compose.say(f"disconnected storage3 from {network} during reads")
    try:
        offline_s = compose.wait_targets(victim, "OFFLINE", timeout=6 * HEARTBEAT_TIMEOUT_S)
        missed = ["--dir", "/compose/while-cut", "--files", "4", "--size", str(4 * MIB), "--seed", "3"]
        assert compose.workload("write", *missed, timeout=180)["mismatches"] == 0
    finally:
        # The service name must come back with the container: compose set it as an alias.
        compose.docker("network", "connect", "--alias", "storage3", network, container)
    serving_s = compose.wait_all_serving(timeout=120)
    result = compose.finish_workload(reader, timeout=120)
    _assert_reads_went_on(result, cut_at, "docker network disconnect storage3")
    _assert_replicas_agree(compose)
    assert compose.workload("verify", *missed, timeout=120)["mismatches"] == 0
    compose.figures["network_disconnect"] = {
        "target_offline_after_s": round(offline_s, 1), "reconnect_to_all_serving_s": round(serving_s, 1),
        "reads_before_cut": result["reads"] - _reads_after(result, cut_at),
        "reads_after_cut": _reads_after(result, cut_at), "longest_read_gap_s": result["longest_gap_s"],
    }


@pytest.mark.timeout(300)
def test_meta_container_restart_keeps_the_namespace(compose: ComposeCluster) -> None:
    before = compose.exec("emberfs", "ls", "-l", "-R", "/", timeout=60).stdout
    started = time.monotonic()
    compose.compose("restart", "meta", timeout=120)
    compose.wait_all_serving(timeout=120)
    compose.figures["meta_restart_to_all_serving_s"] = round(time.monotonic() - started, 1)
    assert compose.exec("emberfs", "ls", "-l", "-R", "/", timeout=60).stdout == before
    assert compose.workload("verify", *DATASET, timeout=120) == {"files": 16, "mismatches": 0, "failures": 0}


@pytest.mark.timeout(300)
def test_down_v_removes_containers_and_volumes(compose: ComposeCluster) -> None:
    compose.run(["docker", "rm", "-f", compose.helper], 60)
    compose.compose("down", "-v", "--remove-orphans", timeout=180)
    label = f"label=com.docker.compose.project={compose.env['COMPOSE_PROJECT_NAME']}"
    assert compose.docker("ps", "-a", "-q", "--filter", label).strip() == ""
    assert compose.docker("volume", "ls", "-q", "--filter", label).strip() == ""


def _assert_replicas_agree(compose: ComposeCluster, timeout: float = 15.0) -> None:
    """Every chain's targets hold the same chunk count and bytes, as each reports them
    (in its heartbeats: a second or so behind, hence the wait)."""
    deadline = time.monotonic() + timeout
    while True:
        routing = compose.routing()
        stats = {t["target_id"]: (t["chunks"], t["used_bytes"]) for t in routing["targets"]}
        differ = {c["chain_id"]: {stats[t["target_id"]] for t in c["targets"]} for c in routing["chains"]}
        differ = {chain: held for chain, held in differ.items() if len(held) != 1}
        if not differ:
            return
        assert time.monotonic() < deadline, f"replicas differ (chain: {{(chunks, bytes)}}): {differ}"
        time.sleep(0.5)
