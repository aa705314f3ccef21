"""Real etcd clusters for the etcd client's tests (Debian's etcd-server, installed here
when missing and this process may run apt-get, as the nginx tests do).

    etcd1   one member, for the whole session (tests/conftest.py)
    etcd3   three members, for the whole session; a test that kills members restarts
            them before it ends (`restored`), so later tests find all three healthy
    client1 / client3  an EtcdClient over every member of that cluster
    keyspace  a fresh key prefix for one test, so tests on a shared cluster never meet
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from emberfs.metaserver.etcdkv.client import EtcdClient
from emberfs.metaserver.etcdkv.launch import EtcdCluster

START_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def etcd3(etcd_clusters: Callable[[int], EtcdCluster]) -> EtcdCluster:
    return etcd_clusters(3)  # tests/conftest.py


@pytest.fixture
def client1(etcd1: EtcdCluster) -> Iterator[EtcdClient]:
    with EtcdClient(etcd1.endpoints, timeout=5.0) as client:
        yield client


@pytest.fixture
def client3(etcd3: EtcdCluster) -> Iterator[EtcdClient]:
    with EtcdClient(etcd3.endpoints, timeout=5.0) as client:
        yield client


@pytest.fixture
def keyspace() -> bytes:
    return f"/t/{uuid.uuid4().hex[:10]}/".encode()


@pytest.fixture
def restored(etcd3: EtcdCluster) -> Iterator[EtcdCluster]:
    """etcd3, with every member it lost restarted (and the cluster healthy) afterwards."""
    try:
        yield etcd3
    finally:
        for index, member in enumerate(etcd3.members):
            if not member.running:
                etcd3.restart(index, timeout=START_TIMEOUT_S)
        etcd3.wait_healthy(START_TIMEOUT_S)
