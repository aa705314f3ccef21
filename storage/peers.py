"""Channels and stubs to other storage servers, one channel per address, reused.

A channel is created on first use and kept; grpc reconnects it by itself (short
backoff, see common.rpc.channel_options). RPC failures become EmberErrors with
`from_rpc_error`, so the operator sees one error model.
"""

from __future__ import annotations

import grpc

from emberfs.common.rpc import channel_options
from emberfs.proto import storage_pb2_grpc

__all__ = ["PeerPool"]


class PeerPool:
    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, storage_pb2_grpc.StorageStub] = {}

    def stub(self, address: str) -> storage_pb2_grpc.StorageStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=channel_options())
            self._channels[address] = channel
            stub = self._stubs[address] = storage_pb2_grpc.StorageStub(channel)
        return stub

    async def close(self) -> None:
        channels, self._channels, self._stubs = self._channels, {}, {}
        for channel in channels.values():
            await channel.close()
