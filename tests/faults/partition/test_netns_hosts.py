"""The hosts fixture itself: who reaches whom before, during and after each kind of cut,
that a cut is silence (a timeout, not a refusal), and that close() leaves nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emberfs.client import SyncClient
from emberfs.metaserver.etcdkv.launch import EtcdCluster, install_etcd

from ._netcluster import HostedCluster
from ._netns import Host, Hosts, cut_rules, hosts_unavailable

PORT = 7411
# Listen on the host's address, accept until killed (the fixture kills it at teardown).
SERVER = ("import socket,sys; s=socket.create_server((sys.argv[1], int(sys.argv[2]))); print('up', flush=True)\n"
          "while True: s.accept()[0].close()")
# Exit 0 when connected, 2 when refused, 3 on a timeout (the silence of a partition).
CONNECT = ("import socket,sys\ntry: socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0)\n"
           "except ConnectionRefusedError: sys.exit(2)\nexcept OSError: sys.exit(3)")

A = Host("a", "10.213.9.2", "efs-1-9-a", "efs9h2")
B = Host("b", "10.213.9.3", "efs-1-9-b", "efs9h3")
ROOT = Host("root", "10.213.9.1")


@pytest.mark.parametrize(("host", "other", "rules"), [
    (A, None, [["-I", "INPUT", "-i", "efs9h2", "-j", "DROP"], ["-I", "OUTPUT", "-o", "efs9h2", "-j", "DROP"]]),
    (A, B, [["-I", "INPUT", "-s", "10.213.9.3", "-j", "DROP"], ["-I", "OUTPUT", "-d", "10.213.9.3", "-j", "DROP"]]),
    (B, ROOT, [["-I", "INPUT", "-s", "10.213.9.1", "-j", "DROP"], ["-I", "OUTPUT", "-d", "10.213.9.1", "-j", "DROP"]]),
])
def test_cut_rules(host: Host, other: Host | None, rules: list[list[str]]) -> None:
    assert cut_rules(host, other) == rules


@pytest.mark.parametrize(("host", "other"), [(ROOT, A), (A, A)])
def test_cut_rules_refuse(host: Host, other: Host) -> None:
    with pytest.raises(ValueError):
        cut_rules(host, other)


def _reach(src: Host, dst: Host) -> int:
    argv = src.exec_argv([sys.executable, "-c", CONNECT, dst.ip, str(PORT)])
    return subprocess.run(argv, timeout=20, check=False).returncode


def test_partitions_cut_and_heal(hosts: Hosts) -> None:
    a, b, c = hosts.add("a"), hosts.add("b"), hosts.add("c")
    servers = []
    try:
        for host in (a, b, c):
            proc = subprocess.Popen(host.exec_argv([sys.executable, "-c", SERVER, host.ip, str(PORT)]),
                                    stdout=subprocess.PIPE, text=True)
            servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "up"

        def matrix() -> dict[tuple[str, str], int]:
            pairs = [(s, d) for s in (hosts.root, a, b, c) for d in (a, b, c) if s is not d]
            return {(s.name, d.name): _reach(s, d) for s, d in pairs}

        everyone = matrix()
        assert set(everyone.values()) == {0}, everyone
        hosts.partition(a, b)
        cut = matrix()
        assert cut[("a", "b")] == cut[("b", "a")] == 3, cut  # silence, not a refusal
        assert all(v == 0 for k, v in cut.items() if set(k) != {"a", "b"}), cut
        hosts.heal()
        assert set(matrix().values()) == {0}
        hosts.partition(c)
        alone = matrix()
        assert all(v == 3 for k, v in alone.items() if "c" in k), alone
        assert all(v == 0 for k, v in alone.items() if "c" not in k), alone
        hosts.heal()
        hosts.partition(b, hosts.root)
        rooted = matrix()
        assert rooted[("root", "b")] == 3 and all(v == 0 for k, v in rooted.items() if k != ("root", "b")), rooted
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(10)


def test_close_leaves_nothing() -> None:
    why = hosts_unavailable()
    if why:
        pytest.skip(why)
    made = Hosts.create()
    host = made.add("x")
    made.partition(host)
    bridge, netns = made.bridge, host.netns
    made.close()
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    shown = subprocess.run(["ip", "link", "show", bridge], capture_output=True, text=True, timeout=10)
    assert shown.returncode != 0, shown.stdout
    assert f"efs{made.subnet}v" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                                                      timeout=10).stdout


def test_metaserver_in_a_host_on_etcd_in_the_root_namespace(hosts: Hosts, tmp_path: Path) -> None:
    """What a partition of a metaserver on etcd needs: etcd listening on the bridge
    (EtcdCluster(host=hosts.root.ip)), a metaserver and a storage server each in a host,
    serving a file; cut the metaserver off from the root namespace (etcd and this client)
    and a namespace call fails; healed, it answers again."""
    why = install_etcd(print)
    if why:
        pytest.skip(why)
    meta, node = hosts.add("meta"), hosts.add("s1")
    etcd = EtcdCluster(tmp_path / "etcd", members=1, host=hosts.root.ip).start(timeout=30.0)
    cluster = HostedCluster(tmp_path / "cluster", hosts, [meta], [node], replicas=1,
                            etcd_endpoints=etcd.endpoints, etcd_max_txn_ops=etcd.max_txn_ops)
    try:
        assert etcd.endpoints[0].startswith(hosts.root.ip + ":")
        cluster.start(timeout=60.0)
        with SyncClient(cluster.meta_address, uid=0, gid=0, groups=[], timeout=30.0) as fs:
            fs.write_file("/on-etcd", b"x" * 1000)
            assert fs.read_file("/on-etcd") == b"x" * 1000
        hosts.partition(meta, hosts.root)
        with SyncClient(cluster.meta_address, uid=0, gid=0, groups=[], timeout=2.0) as fs, \
                pytest.raises(OSError):
            fs.stat("/on-etcd")
        hosts.heal()
        with SyncClient(cluster.meta_address, uid=0, gid=0, groups=[], timeout=30.0) as fs:
            assert fs.read_file("/on-etcd") == b"x" * 1000
    finally:
        hosts.heal()
        cluster.stop(grace=5.0)
        etcd.stop()
