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
