"""The client's capabilities: kept per (inode, right), renewed before they expire.

The metaserver hands out a capability (common/capability.py) with every reply that
opens a file for chunk I/O (Open, Create for write, Truncate); the data path attaches
it to each chunk Read and Write. `CapabilityCache` keeps the newest one per inode and
right, and asks the metaserver for a fresh one (GetCapability) when the one it holds
has lived RENEW_AT of its lifetime (measured on this client's monotonic clock from
when it arrived, so the client's wall clock does not matter), or when a storage server
refused it (`drop`). Renewals of one (inode, right) share one request.

Without tokens the capabilities are empty and never expire: nothing is renewed, and
the storage servers check nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from emberfs.common.capability import RIGHT_READ, RIGHT_WRITE
from emberfs.proto import meta_pb2

__all__ = ["RENEW_AT", "RIGHT_READ", "RIGHT_WRITE", "CapabilityCache"]

RENEW_AT = 0.75  # renew once this fraction of a capability's lifetime has passed
# Inodes x rights remembered; past it the cache starts again. Twice the attribute
# cache's entries (_attrcache.py), so that a path it still holds has its capability
# too: otherwise every hit past 4096 files paid a GetCapability instead of an Open.
MAX_ENTRIES = 2 * 65536

Fetch = Callable[[int, bool], Awaitable[meta_pb2.Capability]]


class CapabilityCache:
    """Capabilities by (inode id, right); `fetch(inode_id, write)` asks the metaserver."""

    def __init__(self, fetch: Fetch, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._held: dict[tuple[int, int], tuple[bytes, float]] = {}  # -> (blob, when to renew: monotonic)
        self._renewing: dict[tuple[int, int], asyncio.Future[bytes]] = {}

    def offer(self, inode_id: int, capability: meta_pb2.Capability) -> None:
        """Keep a capability that came with a metaserver reply (for each right it grants)."""
        renew_at = self._clock() + capability.ttl_ms / 1000 * RENEW_AT if capability.ttl_ms else float("inf")
        if len(self._held) >= MAX_ENTRIES:
            self._held = {}
        for right in (RIGHT_READ, RIGHT_WRITE):
            if capability.rights & right:
                self._held[(inode_id, right)] = (capability.blob, renew_at)

    def drop(self, inode_id: int, right: int, blob: bytes) -> None:
        """A storage server refused `blob`: the next `blob()` renews (unless it already did)."""
        key = (inode_id, right)
        held = self._held.get(key)
        if held is not None and held[0] == blob:
            del self._held[key]

    async def blob(self, inode_id: int, right: int) -> bytes:
        """The capability to send for `right` on `inode_id`, renewed if it is due.
        PermissionError (from the metaserver) when the caller may no longer do it."""
        key = (inode_id, right)
        held = self._held.get(key)
        if held is not None and self._clock() < held[1]:
            return held[0]
        renewing = self._renewing.get(key)
        if renewing is None:
            renewing = self._renewing[key] = asyncio.ensure_future(self._renew(inode_id, right))
            renewing.add_done_callback(lambda f: self._renewed(key, f))
        return await asyncio.shield(renewing)

    def _renewed(self, key: tuple[int, int], future: asyncio.Future[bytes]) -> None:
        self._renewing.pop(key, None)
        if not future.cancelled():
            future.exception()  # retrieved here: a waiter cancelled meanwhile must not leave it unheard

    async def _renew(self, inode_id: int, right: int) -> bytes:
        capability = await self._fetch(inode_id, right == RIGHT_WRITE)
        if not capability.rights & right:
            raise PermissionError(f"the metaserver granted {capability.rights} on inode {inode_id}, not {right}")
        self.offer(inode_id, capability)
        return capability.blob
