"""`emberfs cluster`, `cluster wait`, `admin init-chains` and `local-cluster` as real
subprocesses against real clusters."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster, ServerProcess, metaserver_process

CS = 64 * 1024
READY = "emberfs local-cluster ready: meta at "


def emberfs(meta: str | None, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    prefix = ["--meta", meta] if meta else []
    return subprocess.run(
        [sys.executable, "-m", "emberfs.client.cli", *prefix, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cli-cluster"), nodes=3, replicas=3, chunk_size=CS)
    cluster.start(timeout=60.0)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_cluster_table(cli_cluster: LocalCluster) -> None:
    r = emberfs(cli_cluster.meta_address, "cluster")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"cluster manager at {cli_cluster.meta_address}" in out
    assert "routing version" in out
    for p in cli_cluster.storage:
        assert p.address in out
    assert "101:SERVING  201:SERVING  301:SERVING" in out


def test_cluster_json(cli_cluster: LocalCluster) -> None:
    r = emberfs(cli_cluster.meta_address, "cluster", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["routing_version"] >= 1
    assert doc["manager"] == cli_cluster.meta_address
    assert sorted(n["address"] for n in doc["nodes"]) == sorted(p.address for p in cli_cluster.storage)
    assert all(n["alive"] for n in doc["nodes"])
    [chain] = doc["chains"]
    assert [t["target_id"] for t in chain["targets"]] == [101, 201, 301]
    assert {t["public_state"] for t in chain["targets"]} == {"SERVING"}
    assert {t["target_id"] for t in doc["targets"]} == {101, 201, 301}


def test_cluster_wait_ready(cli_cluster: LocalCluster) -> None:
    r = emberfs(cli_cluster.meta_address, "cluster", "wait", "--timeout", "10")
    assert r.returncode == 0, r.stderr


def test_init_chains_is_idempotent(cli_cluster: LocalCluster) -> None:
    r = emberfs(cli_cluster.meta_address, "admin", "init-chains", "--replicas", "3")
    assert r.returncode == 0, r.stderr
    assert "already existed" in r.stdout
    r = emberfs(cli_cluster.meta_address, "admin", "init-chains", "--replicas", "2")
    assert r.returncode == 1
    assert "emberfs: admin init-chains:" in r.stderr


@pytest.fixture
def lone_meta(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = metaserver_process(tmp_path / "meta")
    proc.start(timeout=20)
    try:
        yield proc
    finally:
        proc.stop()


def test_cluster_wait_times_out_without_chains(lone_meta: ServerProcess) -> None:
    r = emberfs(lone_meta.address, "cluster", "wait", "--timeout", "0.5")
    assert r.returncode == 1
    assert "not ready" in r.stderr and "no chains" in r.stderr


def test_init_chains_without_nodes_fails_clearly(lone_meta: ServerProcess) -> None:
    r = emberfs(lone_meta.address, "admin", "init-chains", "--replicas", "3")
    assert r.returncode == 1
    assert "alive" in r.stderr or "node" in r.stderr, r.stderr


def _read_ready(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.5)
        if readable:
            line = proc.stdout.readline()
            if not line:
                break
            assert line.startswith(READY), line
            return line[len(READY):].strip()
        if proc.poll() is not None:
            break
    raise AssertionError(f"no ready line; exit {proc.poll()}")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("engine", ["lmdb", "etcd"])
def test_local_cluster_subprocess(tmp_path: Path, arun, engine: str,  # type: ignore[no-untyped-def]
                                  request: pytest.FixtureRequest) -> None:
    """Start, write, stop, start again on the same data dir: the same cluster and its data.
    With --engine etcd the command also runs a 3-member etcd under the data dir, whose
    members keep their ports across the restart."""
    if engine == "etcd":
        request.getfixturevalue("etcd1")  # etcd installed (tests/conftest.py)
    data_dir = tmp_path / "lc"
    argv = [sys.executable, "-m", "emberfs.client.cli", "local-cluster", "--data-dir", str(data_dir),
            "--chunk-size", str(CS), "--engine", engine]
    expected_children = 4 + (3 if engine == "etcd" else 0)  # metaserver, 3 storage servers (3 etcd members)

    def run_once(payload: bytes | None) -> bytes:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        children: list[int] = []
        try:
            meta = _read_ready(proc, 90)
            children = _children(proc.pid)
            assert len(children) == expected_children, children
            r = emberfs(meta, "cluster", "wait", "--timeout", "30")
            assert r.returncode == 0, r.stderr

            async def io() -> bytes:
                async with Client(meta, uid=0, gid=0) as fs:
                    if payload is not None:
                        await fs.write_file("/lc-file", payload)
                    return await fs.read_file("/lc-file")

            got = arun(io())
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert "stopped" in err
            assert not [pid for pid in children if _alive(pid)]
            return got
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pid in children:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)

    payload = os.urandom(3 * CS + 11)
    assert run_once(payload) == payload
    # Started again on the same data dir: the same cluster and its data.
    assert run_once(None) == payload


def test_local_cluster_reports_a_dead_child(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emberfs.client.cli", "local-cluster", "--data-dir", str(tmp_path / "d"),
         "--nodes", "3", "--replicas", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    children: list[int] = []
    try:
        _read_ready(proc, 90)
        children = _children(proc.pid)
        victim = children[2]  # started in order: metaserver, node 1, node 2, ...
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.0)
        assert proc.poll() is None  # the rest keep running
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert err.count(f"storage node 2 (pid {victim}) exited with code -9") == 1, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
