"""A whole cluster whose namespace lives in etcd: a real `emberfs-meta --engine etcd`
process, three storage servers, the client; then, under a stream of creates, kill -9 of
the metaserver (restarted at once) or of the etcd leader of three members: every
acknowledged create is there afterwards, once, and the files' bytes read back (issue 19)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emberfs.client import SyncClient
from emberfs.client._launch import LocalCluster
from emberfs.metaserver.etcdkv.launch import EtcdCluster

LOAD_S = 30.0  # bound of the create stream
STALL_GOAL_S = 5.0  # issue 19: namespace operations stall at most this long through a failover


def _cluster(root: Path, etcd: EtcdCluster) -> LocalCluster:
    return LocalCluster(root, nodes=3, replicas=3, chunk_size=64 * 1024, etcd_endpoints=etcd.endpoints,
                        etcd_prefix=f"t/{uuid.uuid4().hex[:12]}/", etcd_max_txn_ops=etcd.max_txn_ops)


@pytest.fixture
def etcd_cluster(tmp_path: Path, etcd1: EtcdCluster) -> Iterator[LocalCluster]:
    cluster = _cluster(tmp_path / "cluster", etcd1)
    cluster.start(timeout=90)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd3_cluster(tmp_path: Path, restored: EtcdCluster) -> Iterator[tuple[LocalCluster, EtcdCluster]]:
    cluster = _cluster(tmp_path / "cluster", restored)
    cluster.start(timeout=90)
    try:
        yield cluster, restored
    finally:
        cluster.stop()


def test_the_namespace_and_the_data_path_work_on_etcd(etcd_cluster: LocalCluster) -> None:
    with SyncClient(etcd_cluster.meta_address) as fs:
        fs.makedirs("/a/b", exist_ok=True)
        payload = bytes(range(256)) * 1024  # 4 chunks of 64 KiB
        fs.write_file("/a/b/f", payload)
        assert fs.read_file("/a/b/f") == payload
        fs.rename("/a/b/f", "/a/g")
        assert sorted(fs.listdir("/a")) == ["b", "g"]
        assert fs.read_range("/a/g", 1000, 10) == payload[1000:1010]
        fs.remove("/a/g")
        assert fs.listdir("/a") == ["b"]


@pytest.mark.faults
def test_kill_9_of_the_metaserver_loses_no_acknowledged_create(etcd_cluster: LocalCluster) -> None:
    def fault() -> None:
        etcd_cluster.meta.kill()
        etcd_cluster.meta.restart(timeout=30)  # the same address: clients reconnect

    _creates_through(etcd_cluster, fault, "metaserver kill -9 + restart")


@pytest.mark.faults
def test_kill_9_of_the_etcd_leader_loses_no_acknowledged_create(
        etcd3_cluster: tuple[LocalCluster, EtcdCluster]) -> None:
    cluster, etcd = etcd3_cluster
    _creates_through(cluster, lambda: etcd.kill(etcd.leader()), "etcd leader kill -9 (3 members)")


def _creates_through(cluster: LocalCluster, fault: Callable[[], None], name: str) -> None:
    """A stream of creates (each a small file: namespace and data); `fault` once 20 are
    acknowledged; then 20 more must be. Every acknowledged one must exist with its bytes."""
    acked: list[str] = []
    times: list[float] = []
    errors: list[str] = []
    stop = threading.Event()

    def creates() -> None:
        with SyncClient(cluster.meta_address, timeout=30.0) as fs:
            fs.makedirs("/load", exist_ok=True)
            deadline = time.monotonic() + LOAD_S
            i = 0
            while not stop.is_set() and time.monotonic() < deadline:
                path = f"/load/f{i:05d}"
                try:
                    fs.write_file(path, path.encode())
                except OSError as exc:
                    errors.append(f"{path}: {exc}")
                else:
                    acked.append(path)
                    times.append(time.monotonic())
                i += 1

    writer = threading.Thread(target=creates)
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = len(acked)
        fault()
        deadline = time.monotonic() + 30
        while len(acked) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join(LOAD_S + 60)
    assert len(acked) >= before + 20, f"creates did not resume after the fault ({errors[:3]})"
    stall = max(b - a for a, b in zip(times, times[1:], strict=False))
    print(f"\n{name}: {len(acked)} creates acknowledged, {len(errors)} failed, longest gap between "
          f"acknowledgements {stall:.2f} s")
    assert stall <= STALL_GOAL_S
    with SyncClient(cluster.meta_address) as fs:
        names = set(fs.listdir("/load"))
        assert [a for a in acked if a.rsplit("/", 1)[1] not in names] == []
        for path in acked[:: max(1, len(acked) // 20)]:
            assert fs.read_file(path) == path.encode()
