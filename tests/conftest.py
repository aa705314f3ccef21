"""Suite-wide: with EMBERFS_NO_SKIPS=1 (set by .ci/run) a skipped test fails the run.

A test skips when something it needs is missing (torch, torchdata, nginx, etcd, a Docker
engine). On a developer's machine that is a convenience; in CI, which installs everything,
a skip means a half-failed install or a broken check, and must not pass quietly as green.

    etcd1   a real one-member etcd (Debian's etcd-server, installed when missing and
            this process may run apt-get) for the whole session: the etcd engine's and
            client's tests share it, each under its own key prefix
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

ETCD_START_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def etcd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from emberfs.metaserver.etcdkv.launch import EtcdCluster, install_etcd

    why = install_etcd(lambda text: print(text))
    if why:
        pytest.skip(why)
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd1"), members=1)
    cluster.start(timeout=ETCD_START_TIMEOUT_S)
    try:
        yield cluster
    finally:
        cluster.stop()

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
