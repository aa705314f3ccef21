"""`emberfs admin offline-target / online-target` and `emberfs cluster --watch`, as real
subprocesses against a real cluster with short heartbeats (0.2 s / 1.0 s), plus a
table for the pure diff the watch prints."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from typing import Any

import pytest

from emberfs.client.commands.cluster import routing_changes
from emberfs.proto import mgmt_pb2

S, OFF, Y = mgmt_pb2.SERVING, mgmt_pb2.OFFLINE, mgmt_pb2.SYNCING


def _cli(meta: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "emberfs.client.cli", "--meta", meta, *args]


def emberfs(meta: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(meta, *args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Watch:
    """`emberfs cluster --watch` running in the background; `expect` reads its stdout
    until a line containing the text appears (bounded). Reads the pipe's fd directly:
    a buffered readline could swallow the next line where select() cannot see it."""

    def __init__(self, meta: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            _cli(meta, "cluster", "--watch", "--interval", "0.1", *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self._partial = b""

    def expect(self, text: str, timeout: float = 20.0) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if text in line:
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self.lines += [line.decode() for line in complete]
        pytest.fail(f"`cluster --watch` printed no line with {text!r} in {timeout:g} s: {self.lines}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


def _routing(version: int, chain: list[tuple[int, int]], alive: tuple[bool, ...] = (True, True, True)) -> Any:
    return mgmt_pb2.RoutingInfo(
        routing_version=version,
        nodes=[mgmt_pb2.NodeInfo(node_id=i + 1, address=f"h:{i + 1}", alive=a) for i, a in enumerate(alive)],
        chains=[mgmt_pb2.ChainInfo(chain_id=1, chain_version=version, targets=[
            mgmt_pb2.ChainTarget(target_id=t, public_state=s) for t, s in chain])],
    )


ALL_SERVING = [(101, S), (201, S), (301, S)]


@pytest.mark.parametrize(
    ("old", "new", "lines"),
    [
        (_routing(1, ALL_SERVING), _routing(1, ALL_SERVING), []),
        (
            _routing(1, ALL_SERVING),
            _routing(2, [(101, S), (201, S), (301, OFF)], alive=(True, True, False)),
            ["node 3 at h:3: alive -> dead", "chain 1 v2: target 301 SERVING -> OFFLINE"],
        ),
        (
            _routing(2, [(101, S), (201, S), (301, OFF)]),
            _routing(3, [(101, S), (201, S), (301, Y)]),
            ["chain 1 v3: target 301 OFFLINE -> SYNCING"],
        ),
        (  # the head lost: two targets move up, one state changes
            _routing(1, ALL_SERVING),
            _routing(2, [(201, S), (301, S), (101, OFF)]),
            ["chain 1 v2: target 101 SERVING -> OFFLINE"],
        ),
        (
            _routing(1, ALL_SERVING, alive=(True, True)),
            _routing(1, ALL_SERVING),
            ["node 3 registered at h:3"],
        ),
    ],
)
def test_routing_changes_table(old: Any, new: Any, lines: list[str]) -> None:
    assert routing_changes(old, new) == lines


def test_offline_then_online_target_shows_in_the_watch(own_cluster3: Any) -> None:
    meta = own_cluster3.meta_address
    watch = Watch(meta, "--timeout", "60")
    try:
        watch.expect("chain 1 v1: 101:SERVING 201:SERVING 301:SERVING")
        r = emberfs(meta, "admin", "offline-target", "201")
        assert r.returncode == 0, r.stderr
        assert "target 201 is admin offline" in r.stdout
        assert "201:OFFLINE" in r.stdout
        offline = watch.expect("target 201 SERVING -> OFFLINE")
        table = emberfs(meta, "cluster").stdout
        assert "101:SERVING  301:SERVING  201:OFFLINE" in table  # the chain closes up
        # Its server still heartbeats: only the admin mark keeps it out.
        time.sleep(1.5)
        assert "201:OFFLINE" in emberfs(meta, "cluster").stdout
        r = emberfs(meta, "admin", "online-target", "201")
        assert r.returncode == 0, r.stderr
        assert "target 201 is admin online" in r.stdout
        # It rejoins through a sync (it may have missed writes), never straight to SERVING.
        # A sync with nothing to send can end between two polls of the watch: then the
        # chain version shows the step it did not print (each transition bumps it).
        line = watch.expect("target 201 OFFLINE -> ")
        if not line.endswith(("SYNCING", "WAITING")):
            assert line.endswith("SERVING"), line
            assert _chain_version(line) >= _chain_version(offline) + 2, (offline, line)
        # Onlining twice is harmless.
        assert emberfs(meta, "admin", "online-target", "201").returncode == 0
    finally:
        watch.close()


def test_kill_9_and_restart_of_a_node_show_in_the_watch(own_cluster3: Any) -> None:
    meta = own_cluster3.meta_address
    watch = Watch(meta, "--timeout", "60")
    try:
        watch.expect("routing version")
        own_cluster3.storage[2].kill()
        watch.expect("node 3 at ")
        watch.expect("target 301 SERVING -> OFFLINE")
        own_cluster3.storage[2].restart()
        watch.expect("node 3 at ")
        watch.expect("target 301 OFFLINE -> ")
    finally:
        watch.close()


def test_watch_outlives_a_metaserver_restart(own_cluster3: Any) -> None:
    meta = own_cluster3.meta_address
    watch = Watch(meta, "--timeout", "60")
    try:
        watch.expect("routing version")
        own_cluster3.meta.kill()
        watch.expect("unreachable")
        own_cluster3.meta.restart()
        watch.expect("answers again")
        assert emberfs(meta, "admin", "offline-target", "101").returncode == 0
        watch.expect("target 101 SERVING -> OFFLINE")
    finally:
        watch.close()


def test_watch_count_and_timeout_bound_it(own_cluster3: Any) -> None:
    meta = own_cluster3.meta_address
    started = time.monotonic()
    r = emberfs(meta, "cluster", "--watch", "--count", "1", "--timeout", "1")
    assert time.monotonic() - started < 20
    assert r.returncode == 1
    assert "0 of 1 changes within 1 s" in r.stderr
    assert "chain 1 v1:" in r.stdout
    r = emberfs(meta, "cluster", "--watch", "--timeout", "0.5")
    assert r.returncode == 0, r.stderr
    watch = Watch(meta, "--count", "1", "--timeout", "30")
    try:
        watch.expect("routing version")
        assert emberfs(meta, "admin", "offline-target", "301").returncode == 0
        watch.expect("target 301 SERVING -> OFFLINE")
        assert watch.proc.wait(10) == 0  # the one change it waited for
    finally:
        watch.close()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("admin", "offline-target", "999"), 1, "emberfs: admin offline-target: target 999: unknown target 999"),
        (("admin", "online-target"), 2, "a target id (>= 1) is required"),
        (("admin", "init-chains"), 2, "--replicas R is required"),
        (("cluster", "--watch", "--json"), 2, "--watch goes with neither"),
        (("cluster", "--watch", "--interval", "0"), 2, "--interval must be > 0"),
    ],
)
def test_admin_and_watch_misuse(cluster3: Any, args: tuple[str, ...], code: int, message: str) -> None:
    r = emberfs(cluster3.meta_address, *args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_init_chains_still_works_and_is_idempotent(cluster3: Any) -> None:
    r = emberfs(cluster3.meta_address, "admin", "init-chains", "--replicas", "3")
    assert r.returncode == 0, r.stderr
    assert "chains already existed" in r.stdout


def _chain_version(line: str) -> int:
    """N of a watch line's `chain C vN:`."""
    match = re.search(r"chain \d+ v(\d+):", line)
    assert match, line
    return int(match.group(1))
