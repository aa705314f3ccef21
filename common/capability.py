"""Chunk-access capabilities: what the metaserver signs at open and storage servers check.

Pure (no I/O, no clock of its own: time is a parameter). The metaserver checks POSIX
permissions when a file is opened (or read or written without an explicit open) and
hands the client a capability for that inode; every client chunk Read and Write carries
it, and the storage server that holds the bytes verifies it (HDFS block access tokens,
cephx tickets): a permission checked only by the client is a suggestion.

Wire form, little-endian, CAPABILITY_SIZE (54) bytes:

    u8  version       VERSION (1)
    u32 key id        which cluster key signed it (capkeys.py; rotation keeps two)
    u64 inode id      the file it opens
    u8  rights        RIGHT_READ | RIGHT_WRITE
    u64 expires       unix time in milliseconds after which it is refused
    32  HMAC-SHA256   over the 22 bytes above, with the key `key id` names

The key is shared by the metaserver and the storage servers only; clients carry the
blob and never see a key. Verification compares MACs with `hmac.compare_digest`.
A capability names no user: whoever holds it may use it until it expires, as with
a bearer token (the client never lets it leave its process except in a pickled
SyncClient's state, which it does not keep).

`CapabilityVerifier` remembers blobs it has verified, so the HMAC runs once per
capability rather than once per chunk; a capability read from the cache is still
checked for expiry, inode and right on every request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct
from collections.abc import Mapping

__all__ = [
    "CAPABILITY_SIZE",
    "CapabilityError",
    "CapabilityVerifier",
    "Capability",
    "RIGHT_NAMES",
    "RIGHT_READ",
    "RIGHT_WRITE",
    "VERSION",
    "check_use",
    "decode",
    "rights_text",
    "sign",
    "verify",
]

VERSION = 1
RIGHT_READ = 1
RIGHT_WRITE = 2
RIGHT_NAMES = {RIGHT_READ: "read", RIGHT_WRITE: "write"}
_ALL_RIGHTS = RIGHT_READ | RIGHT_WRITE

_BODY = struct.Struct("<BIQBQ")
_MAC_SIZE = hashlib.sha256().digest_size
CAPABILITY_SIZE = _BODY.size + _MAC_SIZE
_U32, _U64 = 2**32 - 1, 2**64 - 1


class CapabilityError(ValueError):
    """Why a capability is refused (the message is safe to send back: it names no key)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Capability:
    """A decoded capability (its MAC not necessarily checked: see `verify`)."""

    key_id: int
    inode_id: int
    rights: int
    expires_ms: int


def rights_text(rights: int) -> str:
    names = [name for bit, name in RIGHT_NAMES.items() if rights & bit]
    return "+".join(names) or "none"


def sign(key_id: int, key: bytes, inode_id: int, rights: int, expires_ms: int) -> bytes:
    """The capability blob for (inode, rights, expiry), signed with `key`."""
    if not 0 <= key_id <= _U32 or not 0 < inode_id <= _U64 or not 0 <= expires_ms <= _U64:
        raise ValueError("key id, inode id or expiry out of range")
    if not rights or rights & ~_ALL_RIGHTS:
        raise ValueError(f"rights {rights:#x} must be a non-empty set of RIGHT_READ | RIGHT_WRITE")
    if not key:
        raise ValueError("empty key")
    body = _BODY.pack(VERSION, key_id, inode_id, rights, expires_ms)
    return body + hmac.new(key, body, hashlib.sha256).digest()


def decode(blob: bytes) -> Capability:
    """The fields of a capability, its MAC unchecked; CapabilityError if malformed."""
    if len(blob) != CAPABILITY_SIZE:
        if not blob:
            raise CapabilityError("no capability (open the file through the metaserver first)")
        raise CapabilityError(f"capability of {len(blob)} bytes; expected {CAPABILITY_SIZE}")
    version, key_id, inode_id, rights, expires_ms = _BODY.unpack_from(blob)
    if version != VERSION:
        raise CapabilityError(f"capability version {version}; this server knows {VERSION}")
    return Capability(key_id, inode_id, rights, expires_ms)


def verify(blob: bytes, keys: Mapping[int, bytes]) -> Capability:
    """The capability, once its MAC matches the key it names; CapabilityError if not."""
    cap = decode(blob)
    key = keys.get(cap.key_id)
    if key is None:
        raise CapabilityError(f"capability signed with key {cap.key_id}, which this server does not hold "
                              "(retired, or not yet distributed)")
    expected = hmac.new(key, blob[:_BODY.size], hashlib.sha256).digest()
    if not hmac.compare_digest(expected, blob[_BODY.size:]):
        raise CapabilityError("capability signature does not verify (forged or altered)")
    return cap


def check_use(cap: Capability, inode_id: int, right: int, now_ms: int) -> None:
    """Whether `cap` lets its holder do `right` on `inode_id` at `now_ms`."""
    if cap.inode_id != inode_id:
        raise CapabilityError(f"capability is for inode {cap.inode_id}, not {inode_id}")
    if not cap.rights & right:
        raise CapabilityError(f"capability grants {rights_text(cap.rights)}, not {rights_text(right)}")
    if now_ms >= cap.expires_ms:
        raise CapabilityError(f"capability expired {now_ms - cap.expires_ms} ms ago (renew it at the metaserver)")


class CapabilityVerifier:
    """Verifies capabilities against the keys of the moment, each blob's MAC once.

    `set_keys` replaces the keys and forgets every verified blob, so a retired key
    stops working at once. The cache holds at most `max_entries` blobs; when full it
    is emptied (blobs are re-verified as they come back: a few microseconds each).
    """

    def __init__(self, keys: Mapping[int, bytes], *, max_entries: int = 16384) -> None:
        self._keys = dict(keys)
        self._verified: dict[bytes, Capability] = {}
        self._max = max_entries

    def set_keys(self, keys: Mapping[int, bytes]) -> None:
        self._keys = dict(keys)
        self._verified = {}

    @property
    def key_ids(self) -> frozenset[int]:
        return frozenset(self._keys)

    def authorize(self, blob: bytes, inode_id: int, right: int, now_ms: int) -> Capability:
        """The capability if it allows `right` on `inode_id` now; CapabilityError if not."""
        cap = self._verified.get(blob)
        if cap is None:
            cap = verify(bytes(blob), self._keys)
            if len(self._verified) >= self._max:
                self._verified = {}
            self._verified[bytes(blob)] = cap
        check_use(cap, inode_id, right, now_ms)
        return cap
