"""Chain planning: distinct nodes per chain, rotated heads, clear refusals."""

import pytest

from emberfs.common.errors import FailedPrecondition, InvalidArgument
from emberfs.metaserver.mgmt.plan import max_chains, plan_chains

CASES = [
    # targets by node, replicas, chains asked, expected chains
    ({1: [101], 2: [201], 3: [301]}, 3, 0, [[101, 201, 301]]),
    ({1: [101, 102], 2: [201, 202], 3: [301, 302]}, 3, 0, [[101, 201, 301], [202, 302, 102]]),
    ({1: [101, 102], 2: [201, 202], 3: [301, 302]}, 3, 1, [[101, 201, 301]]),
    ({1: [101], 2: [201]}, 1, 0, [[101], [201]]),
]


@pytest.mark.parametrize("targets,replicas,chains,expected", CASES)
def test_plans(targets, replicas, chains, expected) -> None:
    assert plan_chains(targets, replicas, chains) == expected


@pytest.mark.parametrize("nodes,per_node,replicas", [(3, 1, 3), (3, 4, 3), (4, 2, 3), (5, 3, 2), (6, 5, 3)])
def test_every_chain_on_distinct_nodes(nodes, per_node, replicas) -> None:
    targets = {n: [n * 100 + k for k in range(per_node)] for n in range(1, nodes + 1)}
    planned = plan_chains(targets, replicas)
    assert len(planned) == max_chains(targets, replicas) == nodes * per_node // replicas
    used = [t for chain in planned for t in chain]
    assert len(used) == len(set(used))
    for chain in planned:
        assert len(chain) == replicas and len({t // 100 for t in chain}) == replicas
    heads = {chain[0] // 100 for chain in planned}
    assert len(heads) == min(nodes, len(planned))  # heads spread over nodes


@pytest.mark.parametrize(
    "targets,replicas,chains,exc",
    [
        ({1: [101], 2: [201]}, 3, 0, FailedPrecondition),
        ({1: [101, 102, 103], 2: [201], 3: [301]}, 3, 2, FailedPrecondition),
        ({1: [101]}, 0, 0, InvalidArgument),
    ],
)
def test_refusals(targets, replicas, chains, exc) -> None:
    with pytest.raises(exc):
        plan_chains(targets, replicas, chains)


def _reference_max_chains(targets, replicas) -> int:  # type: ignore[no-untyped-def]
    """The definition, tried for every n: the bisection in max_chains must agree."""
    counts = [len(t) for t in targets.values()]
    return max((n for n in range(1, sum(counts) // max(replicas, 1) + 1)
                if sum(min(c, n) for c in counts) >= n * replicas), default=0)


def _reference_plan(targets, replicas):  # type: ignore[no-untyped-def]
    """The greedy spelled out with a full sort per chain (the bucketed plan_chains must agree)."""
    pools = {node: sorted(ts) for node, ts in sorted(targets.items()) if ts}
    heads = dict.fromkeys(pools, 0)
    planned = []
    for index in range(_reference_max_chains(pools, replicas)):
        order = sorted(pools, key=lambda n: (-len(pools[n]), (n - index) % (max(pools) + 1)))
        nodes = order[:replicas]
        members = [pools[n].pop(0) for n in nodes]
        shift = min(range(replicas), key=lambda i: (heads[nodes[i]], i))
        heads[nodes[shift]] += 1
        planned.append(members[shift:] + members[:shift])
    return planned


def test_plan_agrees_with_the_reference_greedy() -> None:
    import random

    rng = random.Random(23)
    for _ in range(500):
        targets = {node: [node * 100 + k for k in rng.sample(range(1, 10), rng.randint(0, 7))]
                   for node in rng.sample(range(1, 30), rng.randint(1, 12))}
        replicas = rng.randint(1, 4)
        assert max_chains(targets, replicas) == _reference_max_chains(targets, replicas)
        pools = {n: ts for n, ts in targets.items() if ts}
        if len(pools) >= replicas:
            assert plan_chains(targets, replicas) == _reference_plan(targets, replicas), (targets, replicas)
