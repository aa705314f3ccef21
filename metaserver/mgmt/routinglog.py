"""Which routing records changed at which version: what lets GetRouting answer a
caller with a delta instead of the whole table (docs/ARCHITECTURE.md, "Routing deltas").

At thousands of targets the whole table is hundreds of KB, and every storage server
and client fetches routing after each version bump; sending each of them the table
costs the manager O(cluster) per caller. With the log, a caller one version behind
gets the few records that moved.

The manager records every decision it publishes with the ids of the nodes, targets
and chains whose published records it may have changed, tagged with the version that
publishes them. A change published without a version bump (a target's local state)
is tagged with the next version: a caller at the current version is told "unchanged",
as before, and gets the change with the next bump. So `since(known)` (every id tagged
after `known`) covers everything that differs between the table of `known` and the
current one. The log keeps a bounded number of entries; a caller behind its floor
gets the whole table. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ChangeLog", "Touched"]

NODE, TARGET, CHAIN = 0, 1, 2
DEFAULT_LIMIT = 1 << 16  # entries (one per id per decision): a few MB at most


@dataclass(frozen=True)
class Touched:
    """Ids whose published records may differ from a caller's."""

    nodes: frozenset[int] = frozenset()
    targets: frozenset[int] = frozenset()
    chains: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.nodes) + len(self.targets) + len(self.chains)


class ChangeLog:
    def __init__(self, version: int, limit: int = DEFAULT_LIMIT) -> None:
        """An empty log at routing version `version`: it answers callers at `version`
        or later (what it saw before is unknown to it)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.floor = version
        self._limit = limit
        self._entries: deque[tuple[int, int, int]] = deque()  # (tag, kind, id), tags ascending

    def record(self, tag: int, nodes: Iterable[int] = (), targets: Iterable[int] = (),
               chains: Iterable[int] = ()) -> None:
        """Ids changed by one decision, published at version `tag` (never below an
        earlier record's tag)."""
        if self._entries and tag < self._entries[-1][0]:
            raise ValueError(f"tag {tag} is before the last recorded one, {self._entries[-1][0]}")
        for kind, ids in ((NODE, nodes), (TARGET, targets), (CHAIN, chains)):
            self._entries.extend((tag, kind, i) for i in ids)
        while len(self._entries) > self._limit:
            # A caller before this tag would miss the entry: the floor moves up to it.
            self.floor = max(self.floor, self._entries.popleft()[0])

    def since(self, known: int) -> Touched | None:
        """The ids changed after version `known`; None when the log does not reach back
        that far (the caller needs the whole table)."""
        if known < self.floor:
            return None
        found: tuple[set[int], set[int], set[int]] = (set(), set(), set())
        for tag, kind, i in reversed(self._entries):  # newest first: cost is what changed since
            if tag <= known:
                break
            found[kind].add(i)
        return Touched(frozenset(found[NODE]), frozenset(found[TARGET]), frozenset(found[CHAIN]))
