"""The metaserver transport: request headers, deadlines, retries, and failover between
several metaserver addresses.

Both services a metaserver hosts go through it: `Meta` (the namespace) and `Mgmt` (the
cluster manager: routing, chain creation); `call(..., service="mgmt")` reaches the second
with the same headers, deadlines and retries.

Every namespace call of the `Client` goes through `MetaTransport.call`, which is the
client's single error boundary: paths are validated (so a bad name fails here, before
any traffic), the request is built once with a fresh request id, sent with a deadline,
retried on retryable failures with the SAME request id (a retried Create, Remove or
Rename is then answered from the server's record of the first attempt instead of being
applied twice, by whichever metaserver gets the retry when they share an etcd
namespace), and any failure leaves as the built-in OSError family (`_errors.py`).
With a token, every call carries it (`authorization: Bearer`, common/authgrpc.py).

Several addresses (common/failover.py): namespace calls start at an address picked
from the client id (clients spread over the metaservers), manager calls at the first;
a metaserver that is away (UNAVAILABLE, NotPrimary, an attempt's deadline) hands the
same request to the next address at once; once every address failed, the retry policy
backs off as with one address; each kind of call then starts where one last answered.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from emberfs.common.errors import EmberError, from_rpc_error
from emberfs.common.failover import Preference, moves_on, spread_start
from emberfs.common.hostports import format_addresses
from emberfs.common.metachannels import MetaChannels
from emberfs.common.paths import split_path
from emberfs.proto import common_pb2

from ._errors import os_error
from ._retry import RetryPolicy, retry_delay

__all__ = ["Identity", "MetaTransport", "metaservers_at"]

@dataclass(frozen=True, slots=True)
class Identity:
    """Who the caller is, for the server's POSIX permission checks."""

    uid: int
    gid: int
    groups: tuple[int, ...]


class MetaTransport:
    def __init__(
        self,
        addresses: Sequence[str],
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
        if not addresses:
            raise ValueError("need at least one metaserver address")
        self.addresses = tuple(addresses)
        self.address = format_addresses(self.addresses)
        self._token = token
        self._tls_ca = tls_ca
        self.client_id = uuid.uuid4().hex
        self._identity = identity
        self._timeout = timeout
        self._retry = retry
        self._rand, self._sleep, self._clock = rand, sleep, clock
        self._request_ids = itertools.count(1)
        self._channels: MetaChannels | None = None
        # Namespace calls: any metaserver serves them, so clients spread out. Manager
        # calls: only the primary does; look for it from the first address.
        self._namespace = Preference(len(self.addresses), spread_start(self.client_id, len(self.addresses)))
        self._manager = Preference(len(self.addresses))
        self.calls: Counter[str] = Counter()  # RPCs sent by method, retries included (tests, tuning)

    async def open(self) -> None:
        self._channels = MetaChannels(self.addresses, self._token, self._tls_ca)

    async def wait_ready(self, timeout: float) -> None:
        """Until a channel to one of the metaservers is connected (namespace calls then
        start there); TimeoutError after `timeout`."""
        if self._channels is None:
            raise RuntimeError("the transport is not open")
        ready = await self._channels.wait_ready(timeout)
        if len(self.addresses) > 1:
            self._namespace.answered(ready)

    async def close(self) -> None:
        if self._channels is not None:
            await self._channels.close()
        self._channels = None

    @property
    def answering(self) -> tuple[str, str]:
        """(namespace, manager): the address each kind of call tries first now."""
        return self.addresses[self._namespace.index], self.addresses[self._manager.index]

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
        channels = self._channels
        if channels is None:
            raise RuntimeError("the transport is not open")
        manager = service == "mgmt"
        preference = self._manager if manager else self._namespace
        walk = preference.walk()
        deadline = self._clock() + self._timeout
        while True:
            # Floor: the last retry may start a hair after the deadline's edge.
            remaining = max(deadline - self._clock(), 0.001)
            self.calls[method] += 1
            if walk.tried < walk.count and not await channels.reachable(walk.index):
                walk.failed(True)  # not even connected, with another address to try: no attempt spent here
                continue
            stub = channels.mgmt(walk.index) if manager else channels.meta(walk.index)
            try:
                reply = await getattr(stub, method)(request, timeout=min(remaining, self._retry.attempt_timeout))
            except grpc.aio.AioRpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                # Another address of this round: at once, same request id.
                if walk.failed(moves_on(error) and self._clock() < deadline):
                    continue
                delay = retry_delay(self._retry, walk.round, error, deadline - self._clock(), self._rand())
                if delay is None:
                    raise error from rpc_error
                await self._sleep(delay)
                walk.again(preference.index)
                continue
            preference.answered(walk.index)
            return reply


def metaservers_at(address: str) -> str:
    """How a message names the metaservers of "a:1" or "a:1,b:2"."""
    return f"any of the metaservers at {address}" if "," in address else f"the metaserver at {address}"


def _deadline_expired(exc: EmberError) -> bool:
    """from_rpc_error folds DEADLINE_EXCEEDED into Unavailable; the cause still knows."""
    cause = exc.__cause__
    return isinstance(cause, grpc.aio.AioRpcError) and cause.code() == grpc.StatusCode.DEADLINE_EXCEEDED
