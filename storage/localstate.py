"""What a storage server reports as each target's local state, and the facts it is
computed from (shared by the operator, the resync receiver and the agent).

The rule (chainstate.py trusts it: UPTODATE moves a SYNCING target to SERVING):

    closing, or the target failed (disk error)        LOCAL_OFFLINE
    routing shows the target SERVING                  LOCAL_UPTODATE
    routing shows it SYNCING, and its predecessor     LOCAL_UPTODATE
      finished the resync at this chain version
    anything else (SYNCING not done, WAITING,         LOCAL_ONLINE
      OFFLINE, LASTSRV, not in a chain)

The synced mark names the chain version SyncDone came with: if the chain moves
before the manager promotes the target (another target leaves or joins), the mark
no longer counts and the predecessor, which restarts its job on any chain version
change, syncs again. A stale mark can therefore never promote a target that missed
writes under a newer chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from emberfs.common.chainstate import PublicState
from emberfs.common.routing import RoutingView
from emberfs.proto import mgmt_pb2

from .lease import Lease

__all__ = ["NodeHealth", "chain_version_of", "local_states"]


def local_states(view: RoutingView, target_ids: Iterable[int], *, closing: bool = False,
                 failed: Iterable[int] = (), synced: Mapping[int, int] | None = None) -> dict[int, int]:
    """Each target's LocalTargetState by the rule in the module docstring."""
    failed = frozenset(failed)
    synced = synced or {}
    out: dict[int, int] = {}
    for tid in target_ids:
        if closing or tid in failed:
            out[tid] = mgmt_pb2.LOCAL_OFFLINE
            continue
        info = view.targets.get(tid)
        chain = view.chains.get(info.chain_id) if info is not None and info.chain_id else None
        state = chain.state_of(tid) if chain is not None else None
        done = state == PublicState.SYNCING and synced.get(tid) == chain.chain_version  # type: ignore[union-attr]
        out[tid] = mgmt_pb2.LOCAL_UPTODATE if state == PublicState.SERVING or done else mgmt_pb2.LOCAL_ONLINE
    return out


def chain_version_of(view: RoutingView, target_id: int) -> int:
    """The version of the target's chain in `view` (0: no chain): sent with the target's
    local state, so the manager knows which chain version it was judged from."""
    info = view.targets.get(target_id)
    chain = view.chains.get(info.chain_id) if info is not None and info.chain_id else None
    return chain.chain_version if chain is not None else 0


class NodeHealth:
    """The node's mutable facts behind its local states and its right to serve: the
    lease, the targets failed by disk errors (until restart), the synced marks. Any
    change that the manager must hear of at once sets `changed`, which makes the
    agent heartbeat without waiting for its interval."""

    def __init__(self, lease: Lease | None = None) -> None:
        self.lease = lease or Lease(enforced=False)
        self.failed: dict[int, str] = {}
        self.synced: dict[int, int] = {}
        self.changed = asyncio.Event()

    def fail(self, target_id: int, why: str) -> bool:
        """Mark a target failed; True when it was not already."""
        if target_id in self.failed:
            return False
        self.failed[target_id] = why
        self.changed.set()
        return True

    def mark_synced(self, target_id: int, chain_version: int) -> None:
        self.synced[target_id] = chain_version
        self.changed.set()
