"""The metaserver transport: one gRPC channel, request headers, deadlines and retries.

The channel carries both services the metaserver hosts: `Meta` (the namespace) and
`Mgmt` (the cluster manager: routing, chain creation); `call(..., service="mgmt")`
reaches the second with the same headers, deadlines and retries.

Every namespace call of the `Client` goes through `MetaTransport.call`, which is the
client's single error boundary: paths are validated (so a bad name fails here, before
any traffic), the request is built once with a fresh request id, sent with a deadline,
retried on retryable failures with the SAME request id (a retried Create, Remove or
Rename is then answered from the server's record of the first attempt instead of being
applied twice), and any failure leaves as the built-in OSError family (`_errors.py`).
With a token, every call carries it (`authorization: Bearer`, common/authgrpc.py).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from emberfs.common.errors import EmberError, from_rpc_error
from emberfs.common.paths import split_path
from emberfs.common.authgrpc import open_channel
from emberfs.proto import common_pb2, meta_pb2_grpc, mgmt_pb2_grpc

from ._errors import os_error
from ._retry import RetryPolicy, retry_delay

__all__ = ["Identity", "MetaTransport"]

@dataclass(frozen=True, slots=True)
class Identity:
    """Who the caller is, for the server's POSIX permission checks."""

    uid: int
    gid: int
    groups: tuple[int, ...]


class MetaTransport:
    def __init__(
        self,
        address: str,
        identity: Identity,
        *,
        timeout: float,
        retry: RetryPolicy,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        token: str | None = None,
        tls_ca: str | None = None,
    ) -> None:
        self.address = address
        self._token = token
        self._tls_ca = tls_ca
        self.client_id = uuid.uuid4().hex
        self._identity = identity
        self._timeout = timeout
        self._retry = retry
        self._rand, self._sleep, self._clock = rand, sleep, clock
        self._request_ids = itertools.count(1)
        self._channel: grpc.aio.Channel | None = None
        self._stub: meta_pb2_grpc.MetaStub | None = None
        self._mgmt: mgmt_pb2_grpc.MgmtStub | None = None
        self.calls: Counter[str] = Counter()  # RPCs sent by method, retries included (tests, tuning)

    async def open(self) -> None:
        self._channel = open_channel(self.address, self._token, self._tls_ca)
        self._stub = meta_pb2_grpc.MetaStub(self._channel)
        self._mgmt = mgmt_pb2_grpc.MgmtStub(self._channel)

    async def wait_ready(self, timeout: float) -> None:
        """Until the channel to the metaserver is connected; TimeoutError after `timeout`."""
        if self._channel is None:
            raise RuntimeError("the transport is not open")
        await asyncio.wait_for(self._channel.channel_ready(), timeout)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = self._mgmt = None

    def header(self) -> common_pb2.RequestHeader:
        """A request header with this client's id and identity and a fresh request id."""
        return self._header()

    def _header(self) -> common_pb2.RequestHeader:
        ident = self._identity
        return common_pb2.RequestHeader(
            client_id=self.client_id,
            request_id=next(self._request_ids),
            uid=ident.uid,
            gid=ident.gid,
            groups=ident.groups,
        )

    async def call(
        self,
        method: str,
        build: Callable[[common_pb2.RequestHeader], Message],
        *,
        path: str | None,
        path2: str | None = None,
        service: str = "meta",
    ) -> Any:
        """Run Meta.<method> (or Mgmt.<method> with service="mgmt") on the request
        `build(header)` returns; return its reply.

        path and path2 are validated before anything is sent and name any failure.
        """
        try:
            for p in (path, path2):
                if p is not None:
                    split_path(p)
            request = build(self._header())
            return await self._send(method, request, service)
        except EmberError as exc:
            raise os_error(exc, path, path2, timed_out=_deadline_expired(exc)) from None

    async def send(self, method: str, request: Message) -> Any:
        """Run Meta.<method> with retries; failures stay EmberError (for the data path,
        whose boundary names the file: a capability renewal)."""
        return await self._send(method, request)

    async def _send(self, method: str, request: Message, service: str = "meta") -> Any:
        stub = self._mgmt if service == "mgmt" else self._stub
        if stub is None:
            raise RuntimeError("the transport is not open")
        rpc = getattr(stub, method)
        deadline = self._clock() + self._timeout
        attempt = 0
        while True:
            attempt += 1
            # Floor: the last retry may start a hair after the deadline's edge.
            remaining = max(deadline - self._clock(), 0.001)
            self.calls[method] += 1
            try:
                return await rpc(request, timeout=min(remaining, self._retry.attempt_timeout))
            except grpc.aio.AioRpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                delay = retry_delay(self._retry, attempt, error, deadline - self._clock(), self._rand())
                if delay is None:
                    raise error from rpc_error
            await self._sleep(delay)


def _deadline_expired(exc: EmberError) -> bool:
    """from_rpc_error folds DEADLINE_EXCEEDED into Unavailable; the cause still knows."""
    cause = exc.__cause__
    return isinstance(cause, grpc.aio.AioRpcError) and cause.code() == grpc.StatusCode.DEADLINE_EXCEEDED
