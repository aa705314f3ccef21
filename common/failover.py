"""Which metaserver address a call tries next. Pure: no I/O, no clock.

With the etcd engine several metaservers serve one namespace, and exactly one of them is
the cluster manager's primary; any may be dead. A caller (the client's transport, a
storage server's agent) keeps one `Preference` per kind of call: namespace calls, which
every metaserver serves, and manager calls, which only the primary serves (a standby
answers `NotPrimary`). A call walks the addresses with a `Walk`:

- it starts at the preferred address;
- a failure saying this metaserver is away (`moves_on`: UNAVAILABLE, NotPrimary, an
  attempt's deadline) sends the SAME request to the next address at once, while this
  round has untried addresses;
- when the round is over (every address failed, or an error that does not move) the
  caller's retry policy decides: give up, or back off and start a new round from the
  address preferred by then;
- the address that answers becomes the preferred one, so the next call goes there first.

Errors that are answers (NotFound, PermissionDenied, ...) never move: another metaserver
would give the same answer, and a write that failed must not be tried twice.

One address behaves exactly as before there were several: every round is one attempt.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .errors import EmberError, Unavailable

__all__ = ["Preference", "Walk", "moves_on", "spread_start"]


def moves_on(error: EmberError) -> bool:
    """Whether the same request should go to another metaserver: this one is away or
    is not the manager (NotPrimary is an Unavailable; so are deadlines and refusals to
    connect, as common/errors.py folds them)."""
    return isinstance(error, Unavailable)


def spread_start(key: str, count: int) -> int:
    """A stable start index for `key` (a client id): many clients spread their namespace
    calls over the metaservers instead of all asking the first."""
    return zlib.crc32(key.encode()) % count if count > 1 else 0


@dataclass(slots=True)
class Walk:
    """One call's way over `count` addresses."""

    count: int
    index: int  # the address being tried
    tried: int = 1  # addresses tried in this round, the current one included
    round: int = 1  # rounds begun: the attempt number the retry policy sees

    def failed(self, moves: bool) -> bool:
        """After a failure at `index`: True when the next untried address of this round
        is to be tried at once (`index` has moved to it); False when the round is over
        and the retry policy decides (then `again`, or give up)."""
        if not moves or self.tried >= self.count:
            return False
        self.index = (self.index + 1) % self.count
        self.tried += 1
        return True

    def again(self, preferred: int) -> None:
        """Begin the next round at `preferred` (what answered last, perhaps for
        another call while this one waited)."""
        self.index = preferred % self.count
        self.tried = 1
        self.round += 1


class Preference:
    """The address a kind of call tries first: moved to whichever answered last."""

    def __init__(self, count: int, first: int = 0) -> None:
        if count < 1:
            raise ValueError("need at least one address")
        self.count = count
        self.index = first % count

    def walk(self) -> Walk:
        return Walk(self.count, self.index)

    def answered(self, index: int) -> bool:
        """Record that `index` answered; True when that changes the preferred address."""
        changed = index != self.index
        self.index = index
        return changed
