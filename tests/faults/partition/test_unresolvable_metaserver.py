"""A metaserver address whose name never resolves (its DNS server is silent, as a
stopped container's service name is on an engine without upstream DNS) must not cost a
client with another address its whole attempt deadline: the client moves on once the
channel has not connected within the connect budget (common/metachannels.py).

The client runs in a host of its own whose /etc/resolv.conf (`ip netns exec` mounts
/etc/netns/NAME/resolv.conf over it) names a DNS server that does not exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from emberfs.client._launch import metaserver_process
from emberfs.common.metachannels import CONNECT_BUDGET_S

from ._netns import Hosts

ATTEMPT_S = 10.0  # the client's default attempt deadline, which the old behaviour spent

PROBE = """
import asyncio, sys, time
from emberfs.client import Client

async def main() -> None:
    async with Client(sys.argv[1], timeout=30.0) as fs:
        began = time.monotonic()
        routing = await fs.routing()  # a manager call: it starts at the first address
        print(f"{time.monotonic() - began:.3f} {routing.routing_version} {fs.manager_address}")

asyncio.run(main())
"""


def test_a_name_that_never_resolves_costs_the_connect_budget(hosts: Hosts, tmp_path: Path) -> None:
    client = hosts.add("client")
    assert client.netns is not None
    silent_dns = hosts.root.ip.rsplit(".", 1)[0] + ".250"  # on the bridge's subnet, no such host
    etc = Path("/etc/netns") / client.netns
    etc.mkdir(parents=True)
    meta = metaserver_process(tmp_path / "meta", listen=f"{hosts.root.ip}:0")
    try:
        (etc / "resolv.conf").write_text(f"nameserver {silent_dns}\noptions timeout:5 attempts:3\n")
        meta.start(timeout=30.0)
        addresses = f"ghost.emberfs.test:9000,{meta.address}"
        done = subprocess.run(client.exec_argv([sys.executable, "-c", PROBE, addresses]), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        took_s, version, manager = done.stdout.split()
        print(f"\nmanager call with an unresolvable first address: {float(took_s):.2f} s")
        assert manager == meta.address and int(version) >= 0
        assert float(took_s) < CONNECT_BUDGET_S + 2.0 < ATTEMPT_S
    finally:
        meta.stop(grace=5.0)
        shutil.rmtree(etc, ignore_errors=True)
