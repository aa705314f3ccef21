"""Idempotency records: a retried non-idempotent request gets its first reply back.

As in 3FS, every mutating request carries (client_id, request_id). The first
successful run stores its serialized reply under that pair *in the same transaction*
as the change itself, so either both are durable or neither is; a retry that finds
the record returns it instead of running again (a retried Remove does not fail with
NotFound, a retried Create does not fail with AlreadyExists). Failures are not
stored: a retry of a failed request simply runs again.

The `idem` database holds two key spaces:

    b"r" ‖ u16be len ‖ client_id ‖ u64be request_id -> i64be stored_ns ‖ u8 len ‖ method ‖ reply
    b"t" ‖ i64be stored_ns ‖ (the record key minus b"r") -> b""

The second is a time index, so pruning old records is a short cursor walk from the
start instead of a scan of every record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message

from emberfs.common.errors import InvalidArgument

from .txn import MetaTxn

__all__ = ["MAX_CLIENT_ID_BYTES", "once", "prune"]

MAX_CLIENT_ID_BYTES = 256  # LMDB keys are at most 511 bytes

_TS = struct.Struct(">q")
_R = TypeVar("_R", bound=Message)


def _record_key(client_id: str, request_id: int) -> bytes:
    raw = client_id.encode("utf-8")
    if len(raw) > MAX_CLIENT_ID_BYTES:
        raise InvalidArgument(f"client_id is {len(raw)} bytes; the limit is {MAX_CLIENT_ID_BYTES}")
    return b"r" + struct.pack(">H", len(raw)) + raw + struct.pack(">Q", request_id)


def once(
    tx: MetaTxn,
    client_id: str,
    request_id: int,
    method: str,
    reply_type: type[_R],
    run: Callable[[], _R],
) -> _R:
    """Run `run()` at most once per (client_id, request_id); return the stored reply on a retry.

    Without a client id or with request id 0 the request is not identifiable and
    simply runs.
    """
    if not client_id or request_id == 0:
        return run()
    key = _record_key(client_id, request_id)
    found = tx.kv.get("idem", key)
    if found is not None:
        stored = bytes(found)
        size = stored[8]
        stored_method = stored[9 : 9 + size].decode("ascii")
        if stored_method != method:
            raise InvalidArgument(
                f"request id {request_id} of this client was already used by {stored_method}"
            )
        return reply_type.FromString(stored[9 + size :])
    reply = run()
    tag = method.encode("ascii")
    stamp = _TS.pack(tx.now_ns)
    tx.kv.put("idem", key, stamp + bytes([len(tag)]) + tag + reply.SerializeToString())
    tx.kv.put("idem", b"t" + stamp + key[1:], b"")
    return reply


def prune(tx: MetaTxn, older_than_ns: int, limit: int = 1000) -> int:
    """Delete up to `limit` records stored before older_than_ns; return how many."""
    doomed = []
    for key, _ in tx.kv.scan("idem", b"t", b"u", limit=limit):  # the time index, oldest first
        if _TS.unpack_from(key, 1)[0] >= older_than_ns:
            break
        doomed.append(key)
    for key in doomed:
        tx.kv.delete("idem", key)
        tx.kv.delete("idem", b"r" + key[9:])
    return len(doomed)
