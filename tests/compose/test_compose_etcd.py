"""docker-compose.etcd.yml: EmberFS on a 3-member etcd with two metaservers, as users run it.

In order, on one stack (the module fixture `compose_etcd`): every chain serves after `up`
and the etcd key `emberfs/manager/primary` names one metaserver, which alone answers
cluster-manager calls; files written and read back through the client container;
`docker kill` (SIGKILL) of the primary's container while a reader and a creator run: the
other metaserver takes over, reads, writes and creates go on, no storage target leaves
its chain, every acknowledged file reads back, and the killed one started again stays a
standby; then `docker kill` of the etcd leader under the same load: the namespace keeps
working, and the member started again rejoins. The stalls are the figures.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from typing import Any

import pytest

# The fixture's class, by its fixture only: test modules import no conftest
# (--import-mode=importlib).
ComposeCluster = Any

MIB = 1024 * 1024
PRIMARY_KEY = "emberfs/manager/primary"  # `--etcd-prefix` (default emberfs/) + manager/primary
ETCD = ("etcd1", "etcd2", "etcd3")
ENDPOINTS = "--endpoints=" + ",".join(f"{m}:2379" for m in ETCD)
DATASET = ["--dir", "/etcd/data", "--files", "8", "--size", str(4 * MIB), "--seed", "1"]
LOAD_S = 18  # each fault comes ~3 s into this much load
SMALL = str(64 * 1024)  # the creator's file size: the namespace, not bandwidth, is the point
# The goals (namespace stall <= 5 s, chunk reads <= 2 s through a manager
# failover) with room for two shared cores running eleven containers.
LONGEST_CREATE_GAP_S = 8.0
LONGEST_READ_GAP_S = 5.0
HEARTBEAT_TIMEOUT_S = 5.0  # docker-compose.etcd.yml's default EMBERFS_HEARTBEAT_TIMEOUT


@pytest.mark.timeout(1800)  # the first test also pays for the images and `up`
def test_up_serves_and_one_metaserver_is_the_manager(compose_etcd: ComposeCluster) -> None:
    routing = compose_etcd.routing()
    assert sorted((n["node_id"], n["address"], n["alive"]) for n in routing["nodes"]) == [
        (1, "storage1:8000", True), (2, "storage2:8000", True), (3, "storage3:8000", True)]
    assert routing["chains"], "the init service created no chains"
    assert set(compose_etcd.target_states().values()) == {"SERVING"}

    primary = _primary(compose_etcd)
    standby = _other(primary)
    # Only the primary answers manager calls; the standby refuses (NotPrimary) and the
    # client, given both, found the primary anyway (routing above).
    assert _cluster_via(compose_etcd, primary).returncode == 0
    refused = _cluster_via(compose_etcd, standby)
    assert refused.returncode != 0, refused.stdout
    # The namespace itself is served by both.
    for meta in (primary, standby):
        ls = compose_etcd.exec("emberfs", "--meta", f"{meta}:9000", "--timeout", "10", "ls", "/", timeout=60)
        assert ls.returncode == 0
    compose_etcd.say(f"etcd stack: {primary} is the manager primary, {standby} a standby")


@pytest.mark.timeout(300)
def test_write_and_read_through_the_client_container(compose_etcd: ComposeCluster) -> None:
    result = compose_etcd.workload("write", *DATASET, timeout=240)
    assert result["mismatches"] == 0, result
    compose_etcd.figures["client_write_mib_s"] = result["write_mib_s"]
    compose_etcd.figures["client_read_mib_s"] = result["read_mib_s"]
    compose_etcd.say(f"etcd stack: wrote {result['bytes'] // MIB} MiB at {result['write_mib_s']} MiB/s, "
                     f"read it back at {result['read_mib_s']} MiB/s")


@pytest.mark.timeout(400)
def test_docker_kill_of_the_manager_primary(compose_etcd: ComposeCluster) -> None:
    primary = _primary(compose_etcd)
    standby = _other(primary)
    container = compose_etcd.container(primary)
    creates = ["--dir", "/etcd/while-primary-killed", "--size", SMALL, "--seed", "4"]
    try:
        reader, creator, killed_at = _under_load(compose_etcd, creates)
        killed_wall = time.time()
        compose_etcd.docker("kill", container)
        compose_etcd.say(f"killed {primary}, the manager primary, under a reader and a creator")
        _wait_primary(compose_etcd, standby, timeout=30)
        # From the new primary's own log line: polling etcd from here lags under this load.
        takeover_s = _became_primary_at(compose_etcd, standby) - killed_wall
        reads, made = _finish(compose_etcd, reader, creator)

        _assert_went_on(reads, made, killed_at, f"docker kill {primary}")
        # Before the storage servers' leases (the heartbeat timeout, 5 s) could lapse.
        assert takeover_s <= HEARTBEAT_TIMEOUT_S, f"{standby} took over after {takeover_s:.1f} s"
        # No target left its chain. A new CLI process given both addresses may ask the
        # dead one first: how long it takes is a figure.
        asked = time.monotonic()
        assert set(compose_etcd.target_states().values()) == {"SERVING"}
        fresh_cli_s = time.monotonic() - asked
        _assert_created_files_read_back(compose_etcd, creates, made["files"])
        # A new file through the surviving metaserver alone.
        text = "made after the primary died\n"
        compose_etcd.exec("emberfs", "--meta", f"{standby}:9000", "put", "-q", "-", "/etcd/after-kill.bin",
                          input=text, timeout=60)
        assert compose_etcd.exec("emberfs", "--meta", f"{standby}:9000", "cat", "/etcd/after-kill.bin",
                                 timeout=60).stdout == text

        # Back again, it is a standby: the survivor keeps the lease.
        started = time.monotonic()
        compose_etcd.docker("start", container)
        healthy_s = _wait_healthy(compose_etcd, primary, timeout=90) - started
    finally:
        compose_etcd.run(["docker", "start", container], 60, check=False)  # whatever failed above
    assert _primary(compose_etcd) == standby
    assert _cluster_via(compose_etcd, primary).returncode != 0
    assert compose_etcd.workload("verify", *DATASET, timeout=120) == {"files": 8, "mismatches": 0, "failures": 0}

    figures = _figures(reads, made, killed_at)
    figures.update(killed=primary, takeover_s=round(takeover_s, 2), restarted_healthy_s=round(healthy_s, 1),
                   new_cli_cluster_while_down_s=round(fresh_cli_s, 1))
    compose_etcd.figures["kill_manager_primary"] = figures
    compose_etcd.say(f"{standby} took over {takeover_s:.2f} s after the kill; " + _summary(figures))


@pytest.mark.timeout(400)
def test_docker_kill_of_the_etcd_leader(compose_etcd: ComposeCluster) -> None:
    leader = _etcd_leader(compose_etcd)
    container = compose_etcd.container(leader)
    creates = ["--dir", "/etcd/while-leader-killed", "--size", SMALL, "--seed", "5"]

    try:
        reader, creator, killed_at = _under_load(compose_etcd, creates)
        compose_etcd.docker("kill", container)
        compose_etcd.say(f"killed {leader}, the etcd leader, under a reader and a creator")
        reads, made = _finish(compose_etcd, reader, creator)
        new_leader = _etcd_leader(compose_etcd)
        assert new_leader != leader

        _assert_went_on(reads, made, killed_at, f"docker kill {leader}")
        assert set(compose_etcd.target_states().values()) == {"SERVING"}
        _assert_created_files_read_back(compose_etcd, creates, made["files"])

        started = time.monotonic()
        compose_etcd.docker("start", container)
        rejoined_s = _wait_healthy(compose_etcd, leader, timeout=90) - started
    finally:
        compose_etcd.run(["docker", "start", container], 60, check=False)
    status = _etcd_status(compose_etcd)
    assert len(status) == 3 and len({s["Status"]["leader"] for s in status}) == 1, status

    figures = _figures(reads, made, killed_at)
    figures.update(killed=leader, new_leader=new_leader, restarted_healthy_s=round(rejoined_s, 1))
    compose_etcd.figures["kill_etcd_leader"] = figures
    compose_etcd.say(f"etcd leader {leader} killed, {new_leader} leads; " + _summary(figures))


# -- the load ------------------------------------------------------------------------------


def _under_load(cluster: ComposeCluster, creates: list[str]) -> tuple[Any, Any, float]:
    """A reader of DATASET and a creator of new files, both running; the moment to fault."""
    # The creator first: its duration counts from its first create, and a new client may
    # take a while to find a metaserver; the reader starts at once.
    creator = cluster.start_workload("create", *creates, "--duration", str(LOAD_S - 1))
    reader = cluster.start_workload("read", *DATASET, "--duration", str(LOAD_S))
    time.sleep(3)
    return reader, creator, time.monotonic()


def _finish(cluster: ComposeCluster, reader: Any, creator: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return cluster.finish_workload(reader, timeout=120), cluster.finish_workload(creator, timeout=120)


def _assert_went_on(reads: dict[str, Any], made: dict[str, Any], moment: float, what: str) -> None:
    assert reads["mismatches"] == 0, reads
    assert reads["failure_count"] == 0, f"reads failed after {what}: {reads['failures']}"
    assert made["failure_count"] == 0, f"creates failed after {what}: {made['failures']}"
    assert sum(1 for t in reads["read_times"] if t > moment + 5) > 0, f"no read completed 5 s after {what}"
    assert sum(1 for t in made["create_times"] if t > moment + 5) > 0, f"no create completed 5 s after {what}"
    assert reads["longest_gap_s"] <= LONGEST_READ_GAP_S, reads["longest_gap_s"]
    assert made["longest_gap_s"] <= LONGEST_CREATE_GAP_S, made["longest_gap_s"]


def _assert_created_files_read_back(cluster: ComposeCluster, creates: list[str], files: int) -> None:
    """Nothing acknowledged lost: every file the creator finished reads back whole."""
    assert files > 0
    verify = cluster.workload("verify", *creates, "--files", str(files), timeout=180)
    assert verify == {"files": files, "mismatches": 0, "failures": 0}


def _figures(reads: dict[str, Any], made: dict[str, Any], moment: float) -> dict[str, Any]:
    return {
        "reads": reads["reads"], "reads_after_kill": sum(1 for t in reads["read_times"] if t > moment),
        "longest_read_gap_s": reads["longest_gap_s"],
        "files_created": made["files"], "created_after_kill": sum(1 for t in made["create_times"] if t > moment),
        "longest_create_gap_s": made["longest_gap_s"],
    }


def _summary(figures: dict[str, Any]) -> str:
    return (f"{figures['reads']} reads, longest gap {figures['longest_read_gap_s']} s; "
            f"{figures['files_created']} files created ({figures['created_after_kill']} after the kill), "
            f"longest gap {figures['longest_create_gap_s']} s; back and healthy after "
            f"{figures['restarted_healthy_s']} s")


# -- who is who ------------------------------------------------------------------------------


def _other(meta: str) -> str:
    return {"meta1": "meta2", "meta2": "meta1"}[meta]


def _cluster_via(cluster: ComposeCluster, meta: str) -> Any:
    """`emberfs cluster` (a manager call) asking that metaserver alone."""
    return cluster.exec("emberfs", "--meta", f"{meta}:9000", "--timeout", "5", "cluster", timeout=60, check=False)


def _etcdctl(cluster: ComposeCluster, *args: str, check: bool = True, member: str = "") -> str:
    """etcdctl's stdout, run in `member`'s container (a container id), else in the first
    etcd container that runs, over all three members (with one down, `endpoint status`
    exits 1 and still prints the others)."""
    container = member or _running_etcd(cluster)
    done = cluster.run(["docker", "exec", container, "etcdctl", ENDPOINTS, "--command-timeout=3s", *args],
                       30, check=check)
    return str(done.stdout)


def _running_etcd(cluster: ComposeCluster) -> str:
    for member in ETCD:
        container = cluster.container(member)
        if cluster.docker("inspect", "-f", "{{.State.Running}}", container).strip() == "true":
            return str(container)
    raise AssertionError("no etcd container runs")


def _primary(cluster: ComposeCluster) -> str:
    """The metaserver service the primary record names ("meta2:9000 TOKEN")."""
    value = _etcdctl(cluster, "get", PRIMARY_KEY, "--print-value-only").strip()
    service = value.split(":", 1)[0]
    assert service in ("meta1", "meta2"), f"{PRIMARY_KEY} holds {value!r}"
    return service


def _wait_primary(cluster: ComposeCluster, meta: str, timeout: float) -> float:
    """The moment the primary record names `meta` (as seen from here)."""
    deadline = time.monotonic() + timeout
    member = _running_etcd(cluster)  # looked up once: each poll is one `docker exec`
    while True:
        value = _etcdctl(cluster, "get", PRIMARY_KEY, "--print-value-only", member=member).strip()
        if value.startswith(f"{meta}:"):
            return time.monotonic()
        assert time.monotonic() < deadline, f"{meta} not primary within {timeout:g} s: {value!r}"
        time.sleep(0.05)


def _became_primary_at(cluster: ComposeCluster, meta: str) -> float:
    """The wall-clock time of `meta`'s last "now the cluster manager primary" log line
    (the metaserver logs local time, UTC in the image, to the millisecond)."""
    logs = cluster.compose("logs", "--no-color", meta, timeout=60).stdout
    lines = [line for line in logs.splitlines() if "now the cluster manager primary" in line]
    assert lines, f"{meta} never logged becoming the primary"
    stamp = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", lines[-1])
    assert stamp is not None, lines[-1]
    when = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return when.replace(tzinfo=datetime.UTC).timestamp()


def _etcd_status(cluster: ComposeCluster) -> list[dict[str, Any]]:
    """`etcdctl endpoint status` of the members that answer."""
    out = _etcdctl(cluster, "endpoint", "status", "-w", "json", check=False).strip()
    status: list[dict[str, Any]] = json.loads(out) if out else []
    return status


def _etcd_leader(cluster: ComposeCluster, timeout: float = 30) -> str:
    """The member (service name) the answering members agree leads."""
    deadline = time.monotonic() + timeout
    while True:
        status = _etcd_status(cluster)
        leaders = {s["Status"]["leader"] for s in status}
        by_id = {s["Status"]["header"]["member_id"]: s["Endpoint"].split(":")[0] for s in status}
        if len(leaders) == 1 and (leader := leaders.pop()) in by_id:
            return by_id[leader]
        assert time.monotonic() < deadline, f"no agreed etcd leader within {timeout:g} s: {status}"
        time.sleep(0.5)


def _wait_healthy(cluster: ComposeCluster, service: str, timeout: float) -> float:
    """The moment the container's own health check passes."""
    container = cluster.container(service)
    deadline = time.monotonic() + timeout
    while True:
        if cluster.docker("inspect", "-f", "{{.State.Health.Status}}", container).strip() == "healthy":
            return time.monotonic()
        assert time.monotonic() < deadline, f"{service} not healthy within {timeout:g} s"
        time.sleep(0.3)
