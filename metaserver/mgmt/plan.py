"""Chain table planning: which targets form which chain. Pure functions.

A chain holds `replicas` targets on distinct nodes (a node failure must never take
two replicas of one chain). Heads are rotated over nodes so that client writes, which
all enter at heads, spread over the cluster instead of landing on one server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emberfs.common.errors import FailedPrecondition, InvalidArgument

__all__ = ["plan_chains", "max_chains"]


def max_chains(targets_by_node: Mapping[int, Iterable[int]], replicas: int) -> int:
    """How many chains of `replicas` distinct-node targets the targets allow."""
    counts = sorted((len(list(t)) for t in targets_by_node.values()), reverse=True)
    total, best = sum(counts), 0
    # A chain takes one target from each of `replicas` nodes, so no node can give more
    # than one target per chain: n chains are possible iff sum(min(c, n)) >= n*replicas.
    for n in range(1, total // max(replicas, 1) + 1):
        if sum(min(c, n) for c in counts) >= n * replicas:
            best = n
    return best


def plan_chains(
    targets_by_node: Mapping[int, Iterable[int]], replicas: int, chains: int = 0
) -> list[list[int]]:
    """Group targets into chains; each inner list is ordered head..tail.

    `chains` = 0 asks for as many as possible. Deterministic for the same input.
    """
    if replicas < 1:
        raise InvalidArgument(f"replicas must be at least 1, got {replicas}")
    pools = {node: sorted(ts) for node, ts in sorted(targets_by_node.items()) if ts}
    if len(pools) < replicas:
        raise FailedPrecondition(
            f"{replicas} replicas need {replicas} storage nodes; {len(pools)} registered"
        )
    possible = max_chains(pools, replicas)
    want = chains or possible
    if want > possible:
        raise FailedPrecondition(
            f"{want} chains of {replicas} replicas need more targets: at most {possible} fit"
        )
    planned: list[list[int]] = []
    heads: dict[int, int] = {node: 0 for node in pools}  # chains each node heads
    for index in range(want):
        # Take from the nodes with the most targets left (ties broken by a rotation,
        # so equal nodes take turns) - this keeps the remaining pools balanced.
        order = sorted(pools, key=lambda n: (-len(pools[n]), (n - index) % (max(pools) + 1)))
        nodes = order[:replicas]
        members = [pools[n].pop(0) for n in nodes]
        # The head goes to the chosen node that heads the fewest chains so far.
        shift = min(range(replicas), key=lambda i: (heads[nodes[i]], i))
        heads[nodes[shift]] += 1
        planned.append(members[shift:] + members[:shift])
    return planned
