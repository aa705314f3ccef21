"""Channels and stubs to storage servers: one channel per address, opened lazily, reused.

Shared by the client's data path and by storage servers talking to their chain peers.
grpc reconnects a channel by itself (short backoff, see common.rpc.channel_options).
`call` turns any gRPC failure into the EmberError the server meant (`from_rpc_error`:
StaleChainVersion, NotChainHead, Unavailable, ...); retries and replica choice belong
to the caller. Given the server's bulk address (from routing) and a pool made with
`bulk=True`, Read/Write/Forward travel on the bulk channel instead (bulkclient.py),
with the same replies and the same errors; ReadV exists there only. With a `token`, every call carries it
(gRPC metadata, the bulk hello).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from emberfs.common.authgrpc import open_channel
from emberfs.common.bulkclient import BULK_METHODS, BulkPool
from emberfs.common.errors import from_rpc_error
from emberfs.proto import storage_pb2_grpc

__all__ = ["StoragePool"]


class StoragePool:
    def __init__(self, *, bulk: bool = True, bulk_connections: int = 1, token: str | None = None,
                 tls_ca: str | None = None) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, storage_pb2_grpc.StorageStub] = {}
        self._token = token
        self._tls_ca = tls_ca  # a CA's PEM path: TLS on both transports (common/tls.py)
        token_bytes = token.encode("utf-8") if token else b""
        self.bulk = BulkPool(connections=bulk_connections, token=token_bytes, tls_ca=tls_ca) if bulk else None

    def stub(self, address: str) -> storage_pb2_grpc.StorageStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = open_channel(address, self._token, self._tls_ca)
            self._channels[address] = channel
            stub = self._stubs[address] = storage_pb2_grpc.StorageStub(channel)
        return stub

    async def call(self, address: str, method: str, request: Message, *, timeout: float,
                   bulk_address: str = "", into: memoryview | None = None) -> Any:
        """The reply of `method`; `into` lets a bulk Read land in the caller's buffer."""
        if bulk_address and self.bulk is not None and method in BULK_METHODS:
            return await self.bulk.call(bulk_address, method, request, timeout=timeout, into=into)
        if method == "ReadV":
            raise ValueError("ReadV travels on the bulk channel only: this pool or this server has none")
        try:
            return await getattr(self.stub(address), method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as rpc_error:
            raise from_rpc_error(rpc_error) from rpc_error

    async def close(self) -> None:
        if self.bulk is not None:
            await self.bulk.close()
        channels, self._channels, self._stubs = self._channels, {}, {}
        for channel in channels.values():
            await channel.close()
