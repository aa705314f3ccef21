"""Capability checks at the storage service edge (gRPC servicer and bulk server alike).

With tokens on, every client Read and Write must carry a capability from the
metaserver (common/capability.py) for that chunk's inode with the right it needs: read
for Read; write for every update kind (WRITE, REPLACE, TRUNCATE, REMOVE). Anything
else is refused with CapabilityRefused (gRPC PERMISSION_DENIED, or the bulk error
frame), before the operator sees the request, so nothing of it is written.

Server tokens pass without one: chain forwards, resync and GC use their own methods,
and a server token may forward any write to any replica anyway (common/auth.py), so a
capability would protect nothing from it.

The verifier caches verified blobs (one HMAC per capability, not per chunk); the key
ring's reload hands it new keys and empties the cache, so a retired key stops at once.
This module is the only storage code that knows about capabilities; the CRAQ operator
(craq.py) never sees them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from emberfs.common.auth import Principal, Role
from emberfs.common.capability import RIGHT_READ, RIGHT_WRITE, CapabilityError, CapabilityVerifier
from emberfs.common.capkeys import KeyRing, KeySet
from emberfs.common.errors import CapabilityRefused

__all__ = ["RIGHT_READ", "RIGHT_WRITE", "AccessGuard"]


class AccessGuard:
    """Checks the capabilities of client chunk requests against the key ring's keys."""

    def __init__(self, keys: KeyRing, *, clock: Callable[[], float] = time.time) -> None:
        self._verifier = CapabilityVerifier(keys.keys.keys)
        self._clock = clock
        keys.on_change(self._new_keys)

    def _new_keys(self, keyset: KeySet) -> None:
        self._verifier.set_keys(keyset.keys)

    def check(self, principal: Principal | None, capability: bytes, inode_id: int, right: int) -> None:
        """Return if `principal` may do `right` on `inode_id`; raise CapabilityRefused if not."""
        if principal is not None and principal.role is Role.SERVER:
            return
        try:
            self._verifier.authorize(capability, inode_id, right, int(self._clock() * 1000))
        except CapabilityError as exc:
            what = "read" if right == RIGHT_READ else "write"
            raise CapabilityRefused(f"{what} of inode {inode_id} refused: {exc}") from None
