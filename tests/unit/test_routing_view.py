"""RoutingView: head, tail and successors from the manager's chain order."""

import pytest

from emberfs.common.errors import NotFound
from emberfs.common.routing import RoutingView
from emberfs.proto import mgmt_pb2 as m


def _routing(states):
    chain = m.ChainInfo(chain_id=7, chain_version=3,
                        targets=[m.ChainTarget(target_id=t, public_state=s) for t, s in states])
    return RoutingView(m.RoutingInfo(
        routing_version=9,
        nodes=[m.NodeInfo(node_id=n, address=f"127.0.0.1:{9000 + n}") for n in (1, 2, 3)],
        targets=[m.TargetInfo(target_id=t, node_id=t // 100) for t, _ in states],
        chains=[chain]))


@pytest.mark.parametrize(
    "states,head,tail,succ",
    [
        ([(101, m.SERVING), (201, m.SERVING), (301, m.SERVING)], 101, 301, {101: 201, 201: 301, 301: None}),
        ([(101, m.SERVING), (301, m.SERVING), (201, m.OFFLINE)], 101, 301, {101: 301, 301: None, 201: None}),
        ([(101, m.SERVING), (201, m.SYNCING), (301, m.WAITING)], 101, 101, {101: 201, 201: None, 301: None}),
        ([(101, m.LASTSRV), (201, m.OFFLINE)], None, None, {101: None}),
    ],
)
def test_chain_roles(states, head, tail, succ) -> None:
    chain = _routing(states).chain(7)
    assert (chain.head, chain.tail) == (head, tail)
    for target, expected in succ.items():
        assert chain.successor(target) == expected


def test_lookups() -> None:
    view = _routing([(101, m.SERVING), (201, m.SERVING)])
    assert view.address_of(201) == "127.0.0.1:9002" and view.version == 9 and view.chain_ids() == [7]
    with pytest.raises(NotFound):
        view.chain(8)
    with pytest.raises(NotFound):
        view.node_of(999)
