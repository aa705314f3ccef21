"""A storage server's calls to the cluster manager, over every metaserver address it
was given (`--meta a:9000,b:9000`).

Only the manager's primary answers Mgmt calls: a standby answers NotPrimary, a dead
metaserver UNAVAILABLE or nothing (the attempt's deadline). A call starts at the
address that answered last and on those failures sends the same request to the next
address at once (common/failover.py), for one round at most: what to do after a round
in which none answered is the caller's (registration backs off, heartbeats wait their
interval). The address that answers becomes the current manager; a change is one INFO
line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from emberfs.common.errors import from_rpc_error
from emberfs.common.failover import Preference, moves_on
from emberfs.common.metachannels import MetaChannels

__all__ = ["ManagerLink"]

log = logging.getLogger("emberfs.storage.agent")


class ManagerLink:
    def __init__(self, addresses: Sequence[str], *, clock: Callable[[], float], token: str | None = None,
                 tls_ca: str | None = None) -> None:
        self._channels = MetaChannels(addresses, token, tls_ca)  # token: this server's server token
        self._manager = Preference(len(self._channels.addresses))
        self._clock = clock

    @property
    def address(self) -> str:
        """Where the next call goes first: the metaserver that answered last."""
        return self._channels.addresses[self._manager.index]

    async def call(self, method: str, request: Message, timeout: float) -> tuple[Any, float]:
        """(Mgmt.<method>'s reply, when the answered attempt was sent): a lease renews
        from the sending of the request that was answered (lease.py), which was no
        later than the manager saw it. Raises the last AioRpcError when no address
        answered in this round, or at once on an answer that is an error."""
        walk = self._manager.walk()
        while True:
            if walk.tried < walk.count and not await self._channels.reachable(walk.index):
                walk.failed(True)  # not connected, and another address to try: move on at once
                continue
            sent_at = self._clock()
            try:
                reply = await getattr(self._channels.mgmt(walk.index), method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if walk.failed(moves_on(from_rpc_error(exc))):
                    log.debug("%s at %s failed (%s); trying %s", method, self._channels.addresses[
                        (walk.index - 1) % walk.count], exc.code().name, self._channels.addresses[walk.index])
                    continue
                raise
            before = self.address
            if self._manager.answered(walk.index):
                log.info("cluster manager at %s (was %s)", self.address, before)
            return reply, sent_at

    async def close(self) -> None:
        await self._channels.close()
