"""Issuing chunk-access capabilities (common/capability.py) on the metaserver.

The Meta service asks for a grant after its permission check passed (Open, Create
for write, Truncate, GetCapability); this only signs. Without capability keys (a
cluster without tokens) grants are empty and never expire: storage servers then check
nothing, as before.

Expiries are rounded up to a whole second, so every grant of the same inode and rights
within one second is the same blob: storage servers verify each blob's HMAC once and
find the rest in their cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from emberfs.common import capability
from emberfs.common.capkeys import KeyRing
from emberfs.proto import meta_pb2

__all__ = ["DEFAULT_TTL_S", "CapabilityIssuer"]

DEFAULT_TTL_S = 60.0
_ROUND_MS = 1000


class CapabilityIssuer:
    """Signs grants with the key ring's signing key for `ttl_s` seconds."""

    def __init__(self, keys: KeyRing | None, ttl_s: float = DEFAULT_TTL_S, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.ttl_ms = int(ttl_s * 1000)
        self._clock = clock

    def grant(self, inode_id: int, rights: int) -> meta_pb2.Capability:
        if self.keys is None:
            return meta_pb2.Capability(rights=rights)
        now_ms = int(self._clock() * 1000)
        expires_ms = -(-(now_ms + self.ttl_ms) // _ROUND_MS) * _ROUND_MS
        keyset = self.keys.keys
        blob = capability.sign(keyset.signing, keyset.signing_key, inode_id, rights, expires_ms)
        return meta_pb2.Capability(blob=blob, rights=rights, ttl_ms=self.ttl_ms)
