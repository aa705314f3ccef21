"""Chain table planning: which targets form which chain. Pure functions.

A chain holds `replicas` targets on distinct nodes (a node failure must never take
two replicas of one chain). Heads are rotated over nodes so that client writes, which
all enter at heads, spread over the cluster instead of landing on one server.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping

from emberfs.common.errors import FailedPrecondition, InvalidArgument

__all__ = ["plan_chains", "max_chains"]


def max_chains(targets_by_node: Mapping[int, Iterable[int]], replicas: int) -> int:
    """How many chains of `replicas` distinct-node targets the targets allow."""
    counts = sorted((len(list(t)) for t in targets_by_node.values()), reverse=True)
    # A chain takes one target from each of `replicas` nodes, so no node can give more
    # than one target per chain: n chains are possible iff sum(min(c, n)) >= n*replicas.
    # That slack grows by (nodes with more than n targets) - replicas per step, which
    # never increases: it is concave and 0 at n = 0, so the n that fit are 1..best and a
    # bisection finds best.
    def fits(n: int) -> bool:
        return sum(min(c, n) for c in counts) >= n * replicas

    low, high = 0, sum(counts) // max(replicas, 1)  # fits(low); best <= high
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


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
    span = max(pools) + 1
    # Nodes by targets left, each list ascending: the choice below reads a few of them
    # instead of sorting every node per chain (minutes at thousands of nodes).
    left: dict[int, list[int]] = {}
    for node, ts in pools.items():
        left.setdefault(len(ts), []).append(node)
    for index in range(want):
        # Take from the nodes with the most targets left, ties broken by a rotation
        # (node ids from index mod span upwards, then wrapping), so equal nodes take
        # turns - this keeps the remaining pools balanced.
        nodes = _most_left(left, replicas, index % span)
        for n in nodes:
            count = len(pools[n])
            left[count].remove(n)
            insort(left.setdefault(count - 1, []), n)
        members = [pools[n].pop(0) for n in nodes]
        # The head goes to the chosen node that heads the fewest chains so far.
        shift = min(range(replicas), key=lambda i: (heads[nodes[i]], i))
        heads[nodes[shift]] += 1
        planned.append(members[shift:] + members[:shift])
    return planned


def _most_left(left: Mapping[int, list[int]], replicas: int, first: int) -> list[int]:
    """`replicas` nodes: the most targets left first; among equals, ids from `first` up, then wrapping."""
    nodes: list[int] = []
    for count in sorted(left, reverse=True):
        ids = left[count]
        start = bisect_left(ids, first)
        for j in range(min(replicas - len(nodes), len(ids))):
            nodes.append(ids[(start + j) % len(ids)])
        if len(nodes) == replicas:
            break
    return nodes
