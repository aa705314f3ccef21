"""Run a local etcd cluster (Debian's `etcd` binary, package etcd-server 3.4) for tests,
benchmarks and `local-cluster`: 1 or 3 members on 127.0.0.1 (or another local address,
`host`: the partition tests put etcd on a bridge that network namespaces reach), ports
picked free, each member's data dir and log under `root`.

    cluster = EtcdCluster(root, members=3)
    cluster.start(timeout=30)       # every member answers Status and knows the leader
    cluster.endpoints               # ["127.0.0.1:P0", ...]
    cluster.kill(cluster.leader())  # SIGKILL
    cluster.restart(i)              # same ports, same data dir: it rejoins
    cluster.stop()

fsync stays on (etcd's default): the write rates measured here are durable ones.
A 3-member cluster elects its first leader after one election timeout; heartbeat and
election timeouts are etcd's defaults (100 ms, 1 s) unless given.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from emberfs.common.aptinstall import apt_install
from emberfs.common.errors import EmberError

from .client import EtcdClient
from .model import MemberStatus

__all__ = ["INSTALL_HINT", "EtcdCluster", "EtcdNotFound", "etcd_binary", "install_etcd"]

INSTALL_HINT = "install Debian's etcd-server (apt-get install etcd-server)"
_STOP_GRACE_S = 10.0
_POLL_S = 0.1


class EtcdNotFound(RuntimeError):
    def __init__(self) -> None:
        super().__init__(f"etcd not found: {INSTALL_HINT}")


def etcd_binary() -> str | None:
    """The etcd server binary: $EMBERFS_ETCD, else `etcd` on PATH, else Debian's path."""
    given = os.environ.get("EMBERFS_ETCD")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("etcd") or ("/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None)


def install_etcd(progress: Callable[[str], None]) -> str:
    """Install Debian's etcd-server when etcd is missing and this process may (root with
    apt-get); "" when etcd is there afterwards, else why not."""
    return apt_install("etcd-server", lambda: etcd_binary() is not None, progress, what="etcd", hint=INSTALL_HINT)


def _free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports free now on `host`; all held open together so none is handed out twice."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


class EtcdMember:
    """One etcd process: name, ports, data dir, log."""

    def __init__(self, name: str, client_port: int, peer_port: int, root: Path, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = root / name
        self.log_path = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# etcd's default is 128 operations per Txn; a namespace operation on a large directory
# (a recursive remove) can need more, and a cluster we start can allow it.
MAX_TXN_OPS = 1024
SAVED = "etcd.json"  # the cluster's ports and token, under its root


class EtcdCluster:
    """A local etcd cluster of `members` (1 or 3) processes under `root`, listening on
    `host` (an IPv4 address of this machine)."""

    def __init__(self, root: Path, members: int = 1, *, heartbeat_ms: int = 100, election_ms: int = 1000,
                 snapshot_count: int = 10_000, max_txn_ops: int = MAX_TXN_OPS,
                 extra_args: tuple[str, ...] = (), host: str = "127.0.0.1") -> None:
        if members not in (1, 3, 5):
            raise ValueError("an etcd cluster here has 1, 3 or 5 members")
        self.root = Path(root)
        self.max_txn_ops = max_txn_ops  # give the metaservers the same (--etcd-max-txn-ops)
        # Started again on the same root, the cluster keeps its ports and token: its members'
        # data dirs hold the peer addresses they were created with.
        saved = self._load_saved(members)
        self.token = saved.get("token") or f"emberfs-{uuid.uuid4().hex[:12]}"
        ports = saved.get("ports") or _free_ports(2 * members, host)
        self.members = [EtcdMember(f"m{i}", ports[2 * i], ports[2 * i + 1], self.root, host) for i in range(members)]
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / SAVED).write_text(json.dumps({"token": self.token, "ports": ports}))
        self.flags = [
            f"--heartbeat-interval={heartbeat_ms}", f"--election-timeout={election_ms}",
            f"--snapshot-count={snapshot_count}", f"--max-txn-ops={max_txn_ops}",
            "--logger=zap", "--log-outputs=stderr", "--log-level=warn",
            *extra_args,
        ]
        self._client: EtcdClient | None = None

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def _load_saved(self, members: int) -> dict[str, Any]:
        try:
            saved = json.loads((self.root / SAVED).read_text())
        except (OSError, ValueError):
            return {}
        ports = saved.get("ports")
        if not isinstance(ports, list) or len(ports) != 2 * members:
            return {}
        return dict(saved)

    def _argv(self, binary: str, member: EtcdMember) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        client_url = f"http://{member.endpoint}"
        return [
            binary, f"--name={member.name}", f"--data-dir={member.data_dir}",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={member.peer_url}", f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial}", f"--initial-cluster-token={self.token}",
            "--initial-cluster-state=new",  # ignored by etcd once the data dir holds a cluster
            *self.flags,
        ]

    def _spawn(self, member: EtcdMember) -> None:
        binary = etcd_binary()
        if binary is None:
            raise EtcdNotFound()
        self.root.mkdir(parents=True, exist_ok=True)
        with open(member.log_path, "ab") as log:
            member.proc = subprocess.Popen(self._argv(binary, member), stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=log, start_new_session=True)

    def start(self, timeout: float = 30.0) -> Self:
        """Start every member; return once all are healthy (see wait_healthy)."""
        for member in self.members:
            if not member.running:
                self._spawn(member)
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def statuses(self) -> dict[int, MemberStatus]:
        """Status of every running member that answers, by member index."""
        out = {}
        for i, member in enumerate(self.members):
            if member.running:
                with contextlib.suppress(EmberError):  # down or not answering: left out
                    out[i] = self.client.status(member.endpoint)
        return out

    def wait_healthy(self, timeout: float) -> None:
        """Until every running member answers Status and all name the same leader."""
        deadline = time.monotonic() + timeout
        while True:
            dead = [m for m in self.members if m.proc is not None and m.proc.poll() is not None]
            running = [i for i, m in enumerate(self.members) if m.running]
            statuses = self.statuses()
            leaders = {s.leader for s in statuses.values()}
            if running and len(statuses) == len(running) and len(leaders) == 1 and 0 not in leaders:
                return
            if time.monotonic() > deadline or not running:
                tails = "\n".join(f"--- {m.name} (exit {m.proc.poll() if m.proc else None}):\n{m.log_tail()}"
                                  for m in self.members)
                raise TimeoutError(f"etcd cluster not healthy within {timeout} s ({len(dead)} exited):\n{tails}")
            time.sleep(_POLL_S)

    @property
    def client(self) -> EtcdClient:
        """A client over every member, for the cluster's own checks."""
        if self._client is None:
            self._client = EtcdClient(self.endpoints, timeout=2.0)
        return self._client

    def leader(self) -> int:
        """The index of the member that is leader now (it says so itself)."""
        for i, status in self.statuses().items():
            if status.is_leader:
                return i
        raise TimeoutError("no etcd member is leader now")

    def kill(self, index: int) -> None:
        """SIGKILL one member and reap it."""
        member = self.members[index]
        if member.proc is not None and member.proc.poll() is None:
            member.proc.send_signal(signal.SIGKILL)
            member.proc.wait(_STOP_GRACE_S)

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Start a stopped member again on its ports and data dir; wait until healthy."""
        if self.members[index].running:
            raise RuntimeError(f"etcd member {index} is running")
        self._spawn(self.members[index])
        self.wait_healthy(timeout)

    def stop(self) -> None:
        """SIGTERM every member, SIGKILL any still alive after a grace period."""
        for member in self.members:
            if member.running and member.proc is not None:
                member.proc.terminate()
        for member in self.members:
            if member.proc is None:
                continue
            try:
                member.proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                member.proc.kill()
                member.proc.wait(_STOP_GRACE_S)
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
