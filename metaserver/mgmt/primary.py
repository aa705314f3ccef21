"""Which metaserver is the cluster-manager primary, and the rules that keep it single.

Several metaservers may share one namespace (the etcd engine); exactly one of them runs
the cluster manager at a time (docs/ARCHITECTURE.md, "Manager failover"). A `PrimaryGate`
answers two questions for the manager:

- `holds(now)`: may this process act as primary *right now*? The manager asks before
  every answer it gives (a heartbeat reply renews a storage server's lease, so a deposed
  primary must not give one) and refuses with NotPrimary otherwise;
- `fence(tx)`: inside every manager write transaction, check the primary record in the
  store still names this process. On etcd the read puts the record in the
  transaction's compares, so a write by a primary deposed meanwhile does not commit.

`SOLE` is the gate of the embedded LMDB engine: one metaserver owns its data dir, so it
is always the primary. etcdkv/election.py is the gate of the etcd engine.

The lease-time rule (pure, below): a term lasts from the moment the request that
granted or renewed the lease was *sent* for the lease's TTL, less a margin for clock
rates. etcd starts the TTL when it receives the request, which is later, so the local
term always ends before etcd can expire the lease and let another metaserver in: two
primaries never both hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from emberfs.common.errors import NotPrimary

from ..txn import MetaTxn

__all__ = [
    "CLOCK_MARGIN",
    "PRIMARY_KEY",
    "PRIMARY_TABLE",
    "SOLE",
    "PrimaryGate",
    "Term",
    "check_record",
    "term_after",
]

PRIMARY_TABLE = "manager"
PRIMARY_KEY = b"primary"
CLOCK_MARGIN = 0.05  # a term ends this fraction of the TTL early: clocks may run at slightly different rates


class PrimaryGate(Protocol):
    def holds(self, now: float) -> bool: ...

    def fence(self, tx: MetaTxn) -> None:
        """Raise NotPrimary unless the store's primary record names this process."""
        ...

    @property
    def primary_hint(self) -> str:
        """Where the primary is, as far as this process knows (for error messages)."""
        ...


class _Sole:
    def holds(self, now: float) -> bool:
        return True

    def fence(self, tx: MetaTxn) -> None:
        return None

    @property
    def primary_hint(self) -> str:
        return "this metaserver"


SOLE: PrimaryGate = _Sole()


@dataclass(frozen=True, slots=True)
class Term:
    """One holding of the primary lease: etcd's lease id and when it surely still holds."""

    lease_id: int
    until: float  # monotonic seconds

    def holds(self, now: float) -> bool:
        return now < self.until


def term_after(lease_id: int, sent_at: float, ttl_s: float) -> Term:
    """The term a grant or keep-alive sent at `sent_at` (monotonic) with `ttl_s` gives."""
    if ttl_s <= 0:
        return Term(lease_id, float("-inf"))  # expired: holds at no time
    return Term(lease_id, sent_at + ttl_s * (1 - CLOCK_MARGIN))


def check_record(tx: MetaTxn, identity: bytes) -> None:
    """The fence: NotPrimary unless the primary record, read in `tx`, is `identity`."""
    found = tx.kv.get(PRIMARY_TABLE, PRIMARY_KEY)
    if found != identity:
        where = found.decode(errors="replace").split(" ", 1)[0] if found else "unknown (none elected)"
        raise NotPrimary(f"this metaserver is no longer the cluster manager primary; the primary is at {where}")
