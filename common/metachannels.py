"""One gRPC channel per metaserver address, opened on first use, with its stubs.

Shared by the client's transport (client/_meta.py) and a storage server's agent
(storage/agent.py); which address a call goes to is common/failover.py's decision.
Channels are made on the running event loop (grpc.aio binds them to it), so the first
use must happen there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from emberfs.proto import meta_pb2_grpc, mgmt_pb2_grpc

from .authgrpc import open_channel

__all__ = ["CONNECT_BUDGET_S", "MetaChannels"]

# How long a caller with another address to try waits for a connection to this one
# before moving on: a name that does not resolve, or a peer that accepts TCP and never
# speaks (frozen at start), would otherwise cost a whole attempt deadline.
CONNECT_BUDGET_S = 1.0


class MetaChannels:
    def __init__(self, addresses: Sequence[str], token: str | None = None, tls_ca: str | None = None) -> None:
        if not addresses:
            raise ValueError("need at least one metaserver address")
        self.addresses = tuple(addresses)
        self._token, self._tls_ca = token, tls_ca
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._meta: dict[int, meta_pb2_grpc.MetaStub] = {}
        self._mgmt: dict[int, mgmt_pb2_grpc.MgmtStub] = {}

    def channel(self, index: int) -> grpc.aio.Channel:
        channel = self._channels.get(index)
        if channel is None:
            # With another metaserver to turn to, a frozen one must fail calls fast.
            channel = open_channel(self.addresses[index], self._token, self._tls_ca,
                                   keepalive=len(self.addresses) > 1)
            self._channels[index] = channel
        return channel

    def meta(self, index: int) -> meta_pb2_grpc.MetaStub:
        stub = self._meta.get(index)
        if stub is None:
            stub = self._meta[index] = meta_pb2_grpc.MetaStub(self.channel(index))
        return stub

    def mgmt(self, index: int) -> mgmt_pb2_grpc.MgmtStub:
        stub = self._mgmt.get(index)
        if stub is None:
            stub = self._mgmt[index] = mgmt_pb2_grpc.MgmtStub(self.channel(index))
        return stub

    async def reachable(self, index: int, budget: float = CONNECT_BUDGET_S) -> bool:
        """Whether address `index` is connected, or connects within `budget`; False at
        once when its last connection attempt failed (refused, unresolvable)."""
        channel = self.channel(index)
        state = channel.get_state(try_to_connect=True)
        loop = asyncio.get_running_loop()
        end = loop.time() + budget
        while state is not grpc.ChannelConnectivity.READY:
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                return False
            left = end - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), left)
            except TimeoutError:
                return False
            state = channel.get_state(try_to_connect=True)
        return True

    async def wait_ready(self, timeout: float) -> int:
        """The index of the first address whose channel connects; TimeoutError when
        none does within `timeout`."""
        waits = {asyncio.ensure_future(self.channel(i).channel_ready()): i for i in range(len(self.addresses))}
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        ready = [waits[task] for task in done if not task.cancelled() and task.exception() is None]
        if not ready:
            raise TimeoutError(f"no metaserver of {','.join(self.addresses)} connected within {timeout:g} s")
        return min(ready)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        self._meta.clear()
        self._mgmt.clear()
        for channel in channels.values():
            await channel.close()
