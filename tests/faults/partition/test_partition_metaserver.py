"""A network partition of the cluster manager's primary (issue 19): two metaservers over
one etcd namespace, each in its own host, three storage servers in theirs, a write and
read workload from the root namespace (where etcd runs) given both metaserver addresses.

The primary is cut off from everyone, etcd included. It cannot renew its lease, so its
term runs out and it answers nothing more; etcd expires the lease and the other
metaserver takes over; storage servers and clients move to it. Nothing acknowledged is
lost, no storage lease lapses, writes stall at most 5 s, and after the heal the old
primary stays a standby."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from emberfs.bench.failover_workload import CHUNK, Workload
from emberfs.client import SyncClient
from emberfs.metaserver.etcdkv.client import EtcdClient
from emberfs.metaserver.etcdkv.election import primary_key
from emberfs.metaserver.etcdkv.launch import EtcdCluster, install_etcd

from ._netcluster import HostedCluster
from ._netns import Hosts

LEASE_S = 2
STALL_GOAL_S = 5.0  # issue 19: namespace operations stall at most this long through a failover
BOUND_S = 30.0


def _primary_address(etcd: EtcdCluster, root: bytes) -> str | None:
    with EtcdClient(etcd.endpoints, timeout=5.0) as client:
        record = client.get(primary_key(root))
    return record.value.decode().split(" ", 1)[0] if record is not None else None


def _wait_for(check: object, what: str) -> float:
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - start > BOUND_S:
            raise AssertionError(f"not within {BOUND_S} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def test_the_manager_primary_cut_off_from_everyone(hosts: Hosts, tmp_path: Path,
                                                   partition_load: list[Workload]) -> None:
    why = install_etcd(print)
    if why:
        pytest.skip(why)
    metas = [hosts.add("m1"), hosts.add("m2")]
    servers = [hosts.add(f"s{n}") for n in (1, 2, 3)]
    etcd = EtcdCluster(tmp_path / "etcd", members=1, host=hosts.root.ip).start(timeout=30.0)
    prefix = f"t/{uuid.uuid4().hex[:12]}/"
    cluster = HostedCluster(tmp_path / "cluster", hosts, metas, servers, replicas=3, chunk_size=CHUNK,
                            etcd_endpoints=etcd.endpoints, etcd_prefix=prefix, etcd_max_txn_ops=etcd.max_txn_ops,
                            manager_lease=LEASE_S)
    try:
        cluster.start(timeout=90.0)
        first = _primary_address(etcd, prefix.encode())
        by_address = {str(m.address): host for m, host in zip(cluster.metas, metas, strict=True)}
        assert first in by_address, f"no primary among {sorted(by_address)}: {first}"
        load = Workload(cluster.meta_address, prefix="/cut").start()
        partition_load.append(load)
        load.wait_acks(20)

        cut_at = time.monotonic()
        hosts.partition(by_address[first])
        took = _wait_for(lambda: _primary_address(etcd, prefix.encode()) not in (None, first),
                         "the other metaserver takes the manager over")
        load.wait_acks(20, timeout=BOUND_S)
        time.sleep(LEASE_S)  # the cut outlasts another lease: the old primary must stay out
        hosts.heal()
        healed_at = time.monotonic()
        load.wait_acks(10, timeout=BOUND_S)
        time.sleep(LEASE_S)
        assert _primary_address(etcd, prefix.encode()) not in (None, first), "the healed primary took the role back"
        stall = load.longest_stall(cut_at)
        report = load.stop()
    finally:
        hosts.heal()
    try:
        print(f"\nprimary cut off from everyone: takeover {took:.2f} s, longest write stall {stall:.2f} s "
              f"(cut {healed_at - cut_at:.1f} s); {report.summary()}")
        assert report.failed_writes == 0, report.write_failures
        assert report.bad_reads == []
        assert stall <= STALL_GOAL_S
        lapsed = [line for i in range(len(servers))
                  for line in (cluster.data_dir / f"node-{i + 1}.log").read_text(errors="replace").splitlines()
                  if "lease expired" in line]
        assert lapsed == [], "a storage server stopped serving during the takeover"
        with SyncClient(cluster.meta_address, timeout=30.0) as fs:
            for path, expected in report.files.items():
                assert fs.read_file(path) == expected, path
    finally:
        cluster.stop(grace=5.0)
        etcd.stop()
