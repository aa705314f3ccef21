"""Partitions (network namespaces): fixtures. Root is needed; without it, or without
`ip`/`iptables` that apt-get can install, the tests skip saying why (in CI a skip fails
the run: tests/conftest.py).

    hosts            a Hosts (_netns.py): `hosts.add(name)` makes a host (a netns on this
                     test's bridge, its own 10.213.N.k address), `hosts.run(host, proc)`
                     places a ServerProcess in it, `hosts.partition(a)` cuts a off from
                     everyone, `hosts.partition(a, b)` only a <-> b, `hosts.heal()`;
                     hosts.root is the root namespace (this test's client, an etcd
                     started with EtcdCluster(host=hosts.root.ip)). Torn down at the end
                     whatever happens: processes, rules, namespaces, links.
    net_cluster      a started NetCluster (_netcluster.py): the fault suite's cluster
                     (metaserver on LMDB, 3 storage servers, one chain of 3 replicas,
                     64 KiB chunks, heartbeat every 0.2 s, timeout 1 s), each server in
                     its own host (hosts "meta", "s1".."s3"), judged with hostile/'s
                     per-replica raw reads (partition_verdict); stopped at teardown.
    partition_load   the Workloads a test starts, stopped at teardown.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from emberfs.bench.failover_cluster import HEARTBEAT_INTERVAL_S, HEARTBEAT_TIMEOUT_S
from emberfs.bench.failover_workload import CHUNK, Workload

from ._netcluster import HostedCluster, NetCluster
from ._netns import Hosts, hosts_unavailable


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    why = hosts_unavailable()
    if why:
        pytest.skip(why)
    made = Hosts.create()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def net_cluster(tmp_path: Path, hosts: Hosts) -> Iterator[NetCluster]:
    meta = hosts.add("meta")
    servers = [hosts.add(f"s{n}") for n in (1, 2, 3)]
    local = HostedCluster(tmp_path / "cluster", hosts, [meta], servers, replicas=3, chunk_size=CHUNK,
                          heartbeat_interval=HEARTBEAT_INTERVAL_S, heartbeat_timeout=HEARTBEAT_TIMEOUT_S)
    local.start(timeout=60.0)  # stops what it started if it fails
    cluster = NetCluster(local)
    try:
        yield cluster
    finally:
        hosts.heal()  # a graceful stop, not one waiting on silent peers
        cluster.close()


@pytest.fixture
def partition_load() -> Iterator[list[Workload]]:
    loads: list[Workload] = []
    yield loads
    for load in loads:
        if not load.stopped:
            with contextlib.suppress(Exception):  # teardown: the test has its verdict
                load.stop(timeout=30.0)

