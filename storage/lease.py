"""The storage server's lease: serve only while the manager can still vouch for us.

The manager counts a node dead after `heartbeat_timeout_s` without a heartbeat and
then rebuilds its chains without it. A server that was frozen (SIGSTOP, a long GC
pause, a partition) must not serve from the routing it held before, or a client
could read bytes the new chain has since overwritten. So a server serves reads and
writes only while its last *successful* heartbeat is younger than the timeout:

    renewed_at    timeout_s   age = now - renewed_at        valid
    None          any         -                             no  (never heartbeat)
    t             <= 0        -                             no  (timeout unknown)
    t             T           age < T                       yes
    t             T           age >= T                      no  (expired)

`renewed_at` is the time the heartbeat was *sent*, not answered: the manager saw it
no earlier, so the lease always ends before the manager's deadline for this node.
A heartbeat renews the lease only once routing is at least the version it names
(agent.py), so a server woken from a freeze first learns the new chains.
Time is a parameter (`now`): the rule is table-tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from emberfs.common.errors import TargetNotServing

__all__ = ["Lease", "lease_age_if_expired"]


def lease_age_if_expired(now: float, renewed_at: float | None, timeout_s: float) -> float | None:
    """None while the lease holds; otherwise how long ago it was renewed (inf: never)."""
    if renewed_at is None or timeout_s <= 0:
        return float("inf")
    age = now - renewed_at
    return None if age < timeout_s else age


class Lease:
    """The lease of one storage server; `enforced=False` (in-process operator tests
    without a manager) makes `check` a no-op."""

    def __init__(self, *, enforced: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.enforced = enforced
        self.clock = clock
        self.renewed_at: float | None = None
        self.timeout_s = 0.0

    def renew(self, sent_at: float, timeout_s: float) -> None:
        if timeout_s > 0:
            self.timeout_s = timeout_s
        if self.renewed_at is None or sent_at > self.renewed_at:
            self.renewed_at = sent_at

    @property
    def valid(self) -> bool:
        if not self.enforced:
            return True
        return lease_age_if_expired(self.clock(), self.renewed_at, self.timeout_s) is None

    def check(self) -> None:
        """Raise TargetNotServing (retryable: the client reads another replica or
        retries the write) when the lease has expired."""
        if not self.enforced:
            return
        age = lease_age_if_expired(self.clock(), self.renewed_at, self.timeout_s)
        if age is None:
            return
        if age == float("inf"):
            raise TargetNotServing("lease not held: this server has not heartbeat the manager yet")
        raise TargetNotServing(
            f"lease expired: no heartbeat for {age:.1f} s (timeout {self.timeout_s:g} s); "
            "this server serves again once a heartbeat succeeds"
        )
