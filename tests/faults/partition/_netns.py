"""Hosts on one machine, for partition tests: network namespaces on a bridge.

    hosts = Hosts.create()             # bridge efs<N>br, 10.213.N.1/24, in the root namespace
    m = hosts.add("meta")              # netns with lo up and a veth on the bridge: 10.213.N.2
    hosts.run(m, proc)                 # a ServerProcess (not started) will run inside m
    hosts.partition(m)                 # m cut off from everyone, the root namespace included
    hosts.partition(m, s1)             # only m <-> s1, both directions
    hosts.partition(m, hosts.root)     # only m <-> the root namespace (this test, an etcd there)
    hosts.heal()                       # every cut undone
    hosts.close()                      # processes killed; rules, namespaces, links gone

A cut drops packets silently (iptables DROP in the cut host's own namespace, on INPUT
and OUTPUT), as a real partition does: a peer gets no refusal, only silence, and open
TCP connections hang until keep-alives or deadlines give up. Nothing is added to the
root namespace's iptables, and the bridge does not pass its frames to them
(nf_call_iptables 0), so a root FORWARD policy of DROP (Docker's) cannot cut the hosts
off from each other.

N is the first free subnet from a per-process start: a bridge name is claimed
atomically (creating it fails when it exists) and a subnet already on any interface is
skipped. Names carry this process's pid (netns `efs-<pid>-<N>-<host>`, the bridge's
alias `emberfs-netns <pid>`), so a later run removes what a killed run left behind.
Every `ip`/`iptables` call is bounded by COMMAND_TIMEOUT_S.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from emberfs.client._launch import ServerProcess
from emberfs.common.aptinstall import apt_install

__all__ = ["COMMAND_TIMEOUT_S", "Host", "Hosts", "NetnsError", "cut_rules", "hosts_unavailable"]

COMMAND_TIMEOUT_S = 10.0
SUBNET_PREFIX = "10.213"
FIRST_SUBNET, LAST_SUBNET = 16, 254  # N in 10.213.N.0/24
MAX_HOSTS = 250  # .2 .. .251
ALIAS = "emberfs-netns"
_NETNS_NAME = re.compile(r"^efs-(\d+)-(\d+)-")


class NetnsError(RuntimeError):
    """An `ip` or `iptables` command failed (its stderr says why)."""


@dataclass(frozen=True)
class Host:
    """One host: `netns` None is the root namespace (where the test itself runs)."""

    name: str
    ip: str
    netns: str | None = None
    veth: str | None = None  # its end of the veth pair, inside netns

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """argv run inside this host (`ip netns exec` execs: the pid is the program's own)."""
        return list(argv) if self.netns is None else ["ip", "netns", "exec", self.netns, *argv]


def cut_rules(host: Host, other: Host | None) -> list[list[str]]:
    """The iptables arguments that cut `host` off from `other` (None: from everyone), to
    run inside `host`'s namespace; both directions, dropped silently."""
    if host.netns is None:
        raise ValueError("the root namespace is cut from its side: cut the other host")
    if other is None:
        assert host.veth is not None
        return [["-I", "INPUT", "-i", host.veth, "-j", "DROP"], ["-I", "OUTPUT", "-o", host.veth, "-j", "DROP"]]
    if other.ip == host.ip:
        raise ValueError(f"cannot cut {host.name} off from itself")
    return [["-I", "INPUT", "-s", other.ip, "-j", "DROP"], ["-I", "OUTPUT", "-d", other.ip, "-j", "DROP"]]


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise NetnsError(f"`{' '.join(argv)}` took over {COMMAND_TIMEOUT_S:g} s") from None
    if check and done.returncode:
        raise NetnsError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def hosts_unavailable(progress: Callable[[str], None] = print) -> str:
    """"" when this process can build Hosts, else why not. Installs Debian's iproute2 and
    iptables when missing and allowed (root with apt-get)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for package, binary in (("iproute2", "ip"), ("iptables", "iptables")):
        why = apt_install(package, lambda b=binary: shutil.which(b) is not None, progress, what=f"`{binary}`",
                          hint=f"apt-get install {package}")
        if why:
            return why
    probe = f"efs-{os.getpid()}-0-probe"
    made = _run(["ip", "netns", "add", probe], check=False)
    if made.returncode:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    try:
        rules = _run(["ip", "netns", "exec", probe, "iptables", "-w", "5", "-L", "INPUT", "-n"], check=False)
        if rules.returncode:
            return f"iptables does not work inside a network namespace here: {rules.stderr.strip()}"
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers() -> None:
    """Remove namespaces and bridges left by runs whose process is gone (killed -9)."""
    for line in _run(["ip", "netns", "list"]).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        found = _NETNS_NAME.match(name)
        if found and not _pid_alive(int(found.group(1))):
            _run(["ip", "netns", "del", name], check=False)
    for link in json.loads(_run(["ip", "-j", "link", "show", "type", "bridge"]).stdout or "[]"):
        alias = str(link.get("ifalias", ""))
        if alias.startswith(ALIAS + " ") and alias.split()[-1].isdigit() and not _pid_alive(int(alias.split()[-1])):
            _run(["ip", "link", "del", str(link["ifname"])], check=False)


def _subnets_in_use() -> set[int]:
    used = set()
    for link in json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for info in link.get("addr_info", []):
            address = ipaddress.ip_address(str(info.get("local", "0.0.0.0")))
            network = ipaddress.ip_network(f"{address}/{info.get('prefixlen', 32)}", strict=False)
            for n in range(FIRST_SUBNET, LAST_SUBNET + 1):
                if network.overlaps(ipaddress.ip_network(f"{SUBNET_PREFIX}.{n}.0/24")):
                    used.add(n)
    return used


class Hosts:
    """A bridge in the root namespace and hosts on it (module docstring). Use `create()`."""

    def __init__(self, subnet: int, bridge: str) -> None:
        self.subnet = subnet
        self.bridge = bridge
        self.root = Host("root", f"{SUBNET_PREFIX}.{subnet}.1")
        self.hosts: list[Host] = []
        self._cut: set[str] = set()  # namespaces holding rules
        self._procs: list[ServerProcess] = []

    @classmethod
    def create(cls) -> Hosts:
        """Claim a free subnet and its bridge (NetnsError when none is free)."""
        sweep_leftovers()
        pid = os.getpid()
        used = _subnets_in_use()
        span = LAST_SUBNET - FIRST_SUBNET + 1
        for step in range(span):
            n = FIRST_SUBNET + (pid + step) % span
            if n in used:
                continue
            bridge = f"efs{n}br"
            # nf_call_iptables 0: bridged frames skip the root namespace's iptables.
            if _run(["ip", "link", "add", bridge, "type", "bridge", "nf_call_iptables", "0"], check=False).returncode:
                continue  # another run holds it
            hosts = cls(n, bridge)
            try:
                _run(["ip", "link", "set", bridge, "alias", f"{ALIAS} {pid}"])
                _run(["ip", "addr", "add", f"{hosts.root.ip}/24", "dev", bridge])
                _run(["ip", "link", "set", bridge, "up"])
            except BaseException:
                hosts.close()
                raise
            return hosts
        raise NetnsError(f"no free subnet {SUBNET_PREFIX}.N.0/24 for N in {FIRST_SUBNET}..{LAST_SUBNET}")

    def add(self, name: str) -> Host:
        """A new host: its own namespace, lo up, a veth on the bridge at the next address."""
        if not re.fullmatch(r"[a-z0-9]{1,16}", name) or any(h.name == name for h in self.hosts) or name == "root":
            raise ValueError(f"host name {name!r}: 1-16 of [a-z0-9], unique, not 'root'")
        k = len(self.hosts) + 2
        if k > MAX_HOSTS + 1:
            raise ValueError(f"at most {MAX_HOSTS} hosts")
        host = Host(name, f"{SUBNET_PREFIX}.{self.subnet}.{k}", f"efs-{os.getpid()}-{self.subnet}-{name}",
                    f"efs{self.subnet}h{k}")
        outside = f"efs{self.subnet}v{k}"
        assert host.netns is not None and host.veth is not None
        self.hosts.append(host)  # from here close() removes it, whatever fails below
        _run(["ip", "netns", "add", host.netns])
        _run(["ip", "link", "add", outside, "type", "veth", "peer", "name", host.veth])
        _run(["ip", "link", "set", host.veth, "netns", host.netns])
        _run(["ip", "link", "set", outside, "master", self.bridge])
        _run(["ip", "link", "set", outside, "up"])
        inside = ["ip", "netns", "exec", host.netns, "ip"]
        _run([*inside, "link", "set", "lo", "up"])
        _run([*inside, "addr", "add", f"{host.ip}/24", "dev", host.veth])
        _run([*inside, "link", "set", host.veth, "up"])
        return host

    def run(self, host: Host, proc: ServerProcess) -> ServerProcess:
        """Make `proc` (not started) run inside `host`; close() kills it if still running."""
        if proc.running:
            raise RuntimeError(f"{proc!r} already runs: start it after placing it")
        proc.argv = host.exec_argv(proc.argv)
        self._procs.append(proc)
        return proc

    def partition(self, a: Host, b: Host | None = None) -> None:
        """Cut `a` off from everyone (b None) or only from `b`, both directions, silently."""
        if b is None:
            self._iptables(a, cut_rules(a, None))
            return
        for side, other in ((a, b), (b, a)):
            if side.netns is not None:  # the root namespace's side is cut by the other's rules
                self._iptables(side, cut_rules(side, other))

    def heal(self) -> None:
        """Undo every cut (the namespaces are ours: flushing their chains undoes exactly ours)."""
        for host in self.hosts:
            if host.netns in self._cut:
                for chain in ("INPUT", "OUTPUT"):
                    _run(host.exec_argv(["iptables", "-w", "5", "-F", chain]))
                self._cut.discard(host.netns)

    def _iptables(self, host: Host, rules: list[list[str]]) -> None:
        assert host.netns is not None
        self._cut.add(host.netns)
        for rule in rules:
            _run(host.exec_argv(["iptables", "-w", "5", *rule]))

    def close(self) -> None:
        """Kill the processes still running, then remove every namespace and link (best
        effort: each step runs even when an earlier one failed)."""
        for proc in self._procs:
            if proc.running and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a frozen process must be able to die
                proc.kill()
        for k, host in enumerate(self.hosts, 2):  # a namespace goes with its rules and veth pair
            if host.netns is not None:
                _run(["ip", "netns", "del", host.netns], check=False)
            if _run(["ip", "link", "show", f"efs{self.subnet}v{k}"], check=False).returncode == 0:
                _run(["ip", "link", "del", f"efs{self.subnet}v{k}"], check=False)  # never moved in
        self.hosts.clear()
        self._cut.clear()
        _run(["ip", "link", "del", self.bridge], check=False)
