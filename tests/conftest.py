"""Suite-wide: with EMBERFS_NO_SKIPS=1 (set by .ci/run) a skipped test fails the run.

A test skips when something it needs is missing (torch, torchdata, nginx, etcd, a Docker
engine). On a developer's machine that is a convenience; in CI, which installs everything,
a skip means a half-failed install or a broken check, and must not pass quietly as green.

    etcd_clusters  `etcd_clusters(members)` starts a real local etcd (Debian's etcd-server,
            installed when missing and this process may run apt-get) for the session
    etcd1   one member for the whole session: the etcd engine's and client's tests share
            it, each under its own key prefix
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ETCD_START_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def etcd_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[int], Any]]:
    """`etcd_clusters(members)`: a started local etcd of that many members (1 or 3), stopped
    at the end of the session; installs Debian's etcd-server when missing and allowed,
    else skips with why."""
    from emberfs.metaserver.etcdkv.launch import EtcdCluster, install_etcd

    started: list[EtcdCluster] = []

    def start(members: int) -> EtcdCluster:
        why = install_etcd(lambda text: print(text))
        if why:
            pytest.skip(why)
        cluster = EtcdCluster(tmp_path_factory.mktemp(f"etcd{members}"), members=members)
        started.append(cluster)
        cluster.start(timeout=ETCD_START_TIMEOUT_S)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="session")
def etcd1(etcd_clusters: Callable[[int], Any]) -> Any:
    return etcd_clusters(1)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("EMBERFS_NO_SKIPS") == "1" and _skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get("EMBERFS_NO_SKIPS") == "1" and _skipped:
        terminalreporter.write_line(
            f"EMBERFS_NO_SKIPS=1: {len(_skipped)} test(s) skipped, which fails this run: {', '.join(_skipped[:10])}",
            red=True)
