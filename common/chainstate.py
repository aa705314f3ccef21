"""The chain state machine of the cluster manager, as one pure function.

A chain is an ordered list of targets, each with a *public* state the manager
publishes. Storage servers report each target's *local* state in heartbeats. The
manager recomputes every chain with `next_chain(chain, local_states, admin_offline,
restarted)` whenever a report or a timeout changes something; the result is a pure function of
its inputs (3FS: mgmtd `generateNewChain`), so it is table-tested here and the
manager only stores and publishes what it returns.

Rules (3FS's, in the order they are evaluated over the old chain):

    old public   local (effective)    new public
    SERVING      ONLINE / UPTODATE    SERVING        (keeps its place)
    SERVING      OFFLINE              LASTSRV if no serving target remains and none
                                      has been chosen yet, else OFFLINE
    LASTSRV      ONLINE / UPTODATE    SERVING if nothing serves (it holds the newest
                                      data)
    LASTSRV      OFFLINE              LASTSRV if nothing serves
    LASTSRV      any, while another   as if OFFLINE (below; only malformed input has
                 target serves        a LASTSRV beside a SERVING target)
    SYNCING      UPTODATE             SERVING        (sync done: appended as new tail)
    SYNCING      ONLINE               SYNCING if something serves, else WAITING
    SYNCING      OFFLINE              OFFLINE
    WAITING or   ONLINE               SYNCING if something serves and nothing syncs
    OFFLINE                           yet (one sync per chain), else WAITING
    WAITING or   UPTODATE             WAITING        (a target that was out missed
    OFFLINE                           writes; only ONLINE starts a sync)
    WAITING or   OFFLINE              OFFLINE
    OFFLINE

Then, if any target serves, a LASTSRV left over becomes OFFLINE; OFFLINE targets
keep their relative chain order. A restarted target (its server registered a new
incarnation) counts as locally OFFLINE for the transition that learns of the
restart, whatever it reports: it may have lost updates it held pending, so it
leaves the chain and returns through SYNCING (or, as the last serving target,
through LASTSRV) however quickly it came back. An admin-offlined
target counts as locally OFFLINE whatever it reports (so the last serving target
taken out by an admin becomes LASTSRV, not OFFLINE: otherwise the chain would have
no target allowed to serve first when it returns). A target missing from
`local_states` (no heartbeat) counts as OFFLINE.

Result order: SERVING (head..tail, relative order kept), LASTSRV, SYNCING,
WAITING, OFFLINE (docs/ARCHITECTURE.md, 3FS). Any change of order or state bumps
`chain_version` by exactly one; no change keeps it, so `next_chain` is idempotent.

Invariants (checked by the property tests), for chains built by `new_chain`:
- at most one SYNCING target; a SYNCING target implies a SERVING one;
- either some target serves and none is LASTSRV, or none serves and exactly one
  is LASTSRV;
- a target reaches SERVING only from SERVING, from SYNCING reporting UPTODATE, or
  from LASTSRV when nothing serves: never straight from WAITING or OFFLINE.

Storage servers must report UPTODATE only while SERVING or after their resync is
done, and ONLINE otherwise; this function trusts that report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple

from .errors import InvalidArgument

if TYPE_CHECKING:
    from emberfs.proto import mgmt_pb2

__all__ = [
    "PUBLIC_STATE_ORDER",
    "Chain",
    "ChainTarget",
    "LocalState",
    "PublicState",
    "chain_from_proto",
    "chain_to_proto",
    "chain_transitions",
    "new_chain",
    "next_chain",
]


class LocalState(IntEnum):
    """What a storage server says of its own target (proto: LocalTargetState)."""

    ONLINE = 1
    """Running, but its data may be behind: it must sync before it serves."""
    UPTODATE = 2
    """Running and holding every committed write of its chain."""
    OFFLINE = 3
    """Failed (disk error), shutting down, or silent past the heartbeat timeout."""


class PublicState(IntEnum):
    """The state the manager publishes for a target (proto: PublicTargetState)."""

    SERVING = 1
    """In the chain: serves reads and takes writes."""
    SYNCING = 2
    """Receives writes and a resync from its predecessor; serves no reads."""
    WAITING = 3
    """Back online, waiting for its turn to sync (one sync per chain at a time)."""
    LASTSRV = 4
    """Offline, and was the last serving target: it holds the newest data."""
    OFFLINE = 5
    """Unreachable, or taken out by an admin."""


# The order targets are listed in a published chain.
PUBLIC_STATE_ORDER: tuple[PublicState, ...] = (
    PublicState.SERVING,
    PublicState.LASTSRV,
    PublicState.SYNCING,
    PublicState.WAITING,
    PublicState.OFFLINE,
)


class ChainTarget(NamedTuple):
    target_id: int
    state: PublicState


@dataclass(frozen=True, slots=True)
class Chain:
    """One chain as published: targets ordered SERVING head..tail, then the rest."""

    chain_id: int
    chain_version: int
    targets: tuple[ChainTarget, ...]

    def state_of(self, target_id: int) -> PublicState | None:
        for target in self.targets:
            if target.target_id == target_id:
                return target.state
        return None

    def with_state(self, state: PublicState) -> tuple[int, ...]:
        return tuple(t.target_id for t in self.targets if t.state == state)

    @property
    def serving(self) -> tuple[int, ...]:
        """Readable replicas, head first."""
        return self.with_state(PublicState.SERVING)

    @property
    def head(self) -> int | None:
        serving = self.serving
        return serving[0] if serving else None

    @property
    def tail(self) -> int | None:
        serving = self.serving
        return serving[-1] if serving else None

    @property
    def write_path(self) -> tuple[int, ...]:
        """Targets a write goes through, in order: serving head..tail, then the
        syncing target (CRAQ forwards new writes to it while it resyncs)."""
        return self.serving + self.with_state(PublicState.SYNCING)

    def successor(self, target_id: int) -> int | None:
        """The next target on the write path after `target_id` (None at its end)."""
        path = self.write_path
        if target_id not in path:
            return None
        i = path.index(target_id)
        return path[i + 1] if i + 1 < len(path) else None


def new_chain(chain_id: int, target_ids: Iterable[int]) -> Chain:
    """A freshly created chain: every target SERVING (empty targets agree
    trivially, so there is nothing to sync), at version 1."""
    ids = tuple(target_ids)
    if not ids:
        raise InvalidArgument("a chain needs at least one target")
    if len(set(ids)) != len(ids):
        raise InvalidArgument(f"duplicate target ids in chain {chain_id}: {ids}")
    return Chain(chain_id, 1, tuple(ChainTarget(t, PublicState.SERVING) for t in ids))


def next_chain(
    chain: Chain,
    local_states: Mapping[int, LocalState | int],
    admin_offline: Iterable[int] = frozenset(),
    restarted: Iterable[int] = frozenset(),
) -> Chain:
    """The chain that follows from the targets' local states (see the module rules)."""
    admin = set(admin_offline) | set(restarted)

    def local(target_id: int) -> LocalState:
        if target_id in admin:
            return LocalState.OFFLINE
        return LocalState(local_states.get(target_id, LocalState.OFFLINE))

    new: dict[PublicState, list[int]] = {s: [] for s in PublicState}
    old: dict[PublicState, list[int]] = {s: [] for s in PublicState}
    for target in chain.targets:
        old[target.state].append(target.target_id)
    up = (LocalState.ONLINE, LocalState.UPTODATE)

    def may_sync() -> bool:  # someone to sync from, and the one sync slot is free
        return bool(new[PublicState.SERVING]) and not new[PublicState.SYNCING]

    for t in old[PublicState.SERVING]:
        if local(t) in up:
            new[PublicState.SERVING].append(t)
        elif not new[PublicState.LASTSRV]:
            # Provisional: it stays LASTSRV only if no other target serves (below).
            # When all go at once, the first in chain order is chosen (3FS).
            new[PublicState.LASTSRV].append(t)
        else:
            new[PublicState.OFFLINE].append(t)

    # WAITING before OFFLINE: the longest waiter gets the next sync slot.
    returning = old[PublicState.WAITING] + old[PublicState.OFFLINE]
    for t in old[PublicState.LASTSRV]:
        if new[PublicState.SERVING]:
            returning.append(t)  # malformed input: another target serves already
        elif local(t) in up:
            new[PublicState.SERVING].append(t)  # it has the newest data: serve first
        else:
            new[PublicState.LASTSRV].append(t)

    for t in old[PublicState.SYNCING]:
        state = local(t)
        if state == LocalState.UPTODATE:
            new[PublicState.SERVING].append(t)  # sync done: the new tail
        elif state == LocalState.ONLINE and may_sync():
            new[PublicState.SYNCING].append(t)
        elif state == LocalState.ONLINE:
            new[PublicState.WAITING].append(t)  # nobody to sync from, or a sync runs
        else:
            new[PublicState.OFFLINE].append(t)

    for t in returning:
        state = local(t)
        if state == LocalState.ONLINE and may_sync():
            new[PublicState.SYNCING].append(t)
        elif state in up:
            new[PublicState.WAITING].append(t)
        else:
            new[PublicState.OFFLINE].append(t)

    if new[PublicState.SERVING] and new[PublicState.LASTSRV]:
        new[PublicState.OFFLINE].extend(new[PublicState.LASTSRV])
        new[PublicState.LASTSRV] = []
    position = {t.target_id: i for i, t in enumerate(chain.targets)}
    new[PublicState.OFFLINE].sort(key=position.__getitem__)  # keep chain order

    targets = tuple(ChainTarget(t, s) for s in PUBLIC_STATE_ORDER for t in new[s])
    if targets == chain.targets:
        return chain
    return Chain(chain.chain_id, chain.chain_version + 1, targets)


def chain_transitions(old: Mapping[int, Chain], new: Mapping[int, Chain]) -> list[str]:
    """Human-readable public state changes, e.g. "chain 3 v5: target 201 SERVING -> OFFLINE"."""
    lines = []
    for chain_id, chain in sorted(new.items()):
        before = old.get(chain_id)
        if before is None or before == chain:
            continue
        for target in chain.targets:
            was = before.state_of(target.target_id)
            if was != target.state:
                was_name = was.name if was is not None else "NONE"
                lines.append(
                    f"chain {chain_id} v{chain.chain_version}: target {target.target_id} "
                    f"{was_name} -> {target.state.name}"
                )
    return lines


def chain_to_proto(chain: Chain) -> mgmt_pb2.ChainInfo:
    from emberfs.proto import mgmt_pb2

    return mgmt_pb2.ChainInfo(
        chain_id=chain.chain_id,
        chain_version=chain.chain_version,
        targets=[
            mgmt_pb2.ChainTarget(target_id=t.target_id, public_state=t.state.name)
            for t in chain.targets
        ],
    )


def chain_from_proto(info: mgmt_pb2.ChainInfo) -> Chain:
    return Chain(
        info.chain_id,
        info.chain_version,
        tuple(ChainTarget(t.target_id, PublicState(t.public_state)) for t in info.targets),
    )
