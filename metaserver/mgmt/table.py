"""The cluster manager's records in the metaserver's LMDB database `mgmt`.

Encodings (big-endian ids, so each key space lists in id order):

    b"n" ‖ u32be node_id    -> serialized mgmt_pb2.NodeInfo (node_id, address, bulk_address,
                               incarnation)
    b"t" ‖ u64be target_id  -> serialized mgmt_pb2.TargetInfo (node_id, chain_id, local_state)
    b"c" ‖ u32be chain_id   -> serialized mgmt_pb2.ChainInfo (the chain as published)
    b"a" ‖ u64be target_id  -> b""  (the target is admin-offline)
    b"routing_version"      -> u64be
    b"version_of_chain_set" -> u64be  (moves whenever the set of chain ids changes)

`save` writes the difference between two states inside the caller's transaction, so
one manager decision is one atomic, durable commit (the store's writer thread group
commits it with `sync=True`). Liveness and stats are not stored (state.py says why).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from emberfs.common.chainstate import chain_from_proto, chain_to_proto
from emberfs.proto import mgmt_pb2

from ..kv import KvTxn
from ..txn import MetaTxn
from .draft import Draft
from .state import ClusterState, NodeRecord, TargetRecord

__all__ = ["chain_ids", "chain_set_version", "load", "save", "save_draft", "stored_version"]

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
NODE, TARGET, CHAIN, ADMIN = b"n", b"t", b"c", b"a"
ROUTING_VERSION = b"routing_version"
CHAIN_SET = b"version_of_chain_set"  # not under a kind letter (n, t, c, a)

_K = TypeVar("_K")
_V = TypeVar("_V")


def _node_key(node_id: int) -> bytes:
    return NODE + _U32.pack(node_id)


def _target_key(target_id: int) -> bytes:
    return TARGET + _U64.pack(target_id)


def _chain_key(chain_id: int) -> bytes:
    return CHAIN + _U32.pack(chain_id)


def _admin_key(target_id: int) -> bytes:
    return ADMIN + _U64.pack(target_id)


def load(tx: MetaTxn) -> ClusterState:
    """The persisted state (every node counted alive: the manager grants a grace period)."""
    nodes: dict[int, NodeRecord] = {}
    targets: dict[int, TargetRecord] = {}
    chains = {}
    admin: set[int] = set()
    routing_version = 0
    for key, value in tx.kv.scan("mgmt"):
        kind = key[:1]
        if key == ROUTING_VERSION:
            routing_version = _U64.unpack(value)[0]
        elif kind == NODE:
            info = mgmt_pb2.NodeInfo.FromString(value)
            nodes[info.node_id] = NodeRecord(info.node_id, info.address, info.bulk_address, info.incarnation)
        elif kind == TARGET:
            t = mgmt_pb2.TargetInfo.FromString(value)
            targets[t.target_id] = TargetRecord(t.target_id, t.node_id, t.chain_id, int(t.local_state))
        elif kind == CHAIN:
            chain = chain_from_proto(mgmt_pb2.ChainInfo.FromString(value))
            chains[chain.chain_id] = chain
        elif kind == ADMIN:
            admin.add(_U64.unpack(key[1:])[0])
    return ClusterState(
        nodes=nodes,
        targets=targets,
        chains=chains,
        routing_version=routing_version,
        admin_offline=frozenset(admin),
        alive=frozenset(nodes),
    )


def _sync(
    tx: MetaTxn,
    old: Mapping[_K, _V],
    new: Mapping[_K, _V],
    key: Callable[[_K], bytes],
    encode: Callable[[_V], bytes],
) -> None:
    for k in old.keys() - new.keys():
        tx.kv.delete("mgmt", key(k))
    for k, value in new.items():
        if old.get(k) != value:
            tx.kv.put("mgmt", key(k), encode(value))


def _encode_node(node: NodeRecord) -> bytes:
    return mgmt_pb2.NodeInfo(
        node_id=node.node_id, address=node.address, bulk_address=node.bulk_address,
        incarnation=node.incarnation
    ).SerializeToString()


def _encode_target(target: TargetRecord) -> bytes:
    return mgmt_pb2.TargetInfo(
        target_id=target.target_id,
        node_id=target.node_id,
        chain_id=target.chain_id,
        local_state=target.local_state,  # type: ignore[arg-type]
    ).SerializeToString()


def stored_version(tx: MetaTxn) -> int:
    """The routing version as stored (a standby polls it to know when to reload)."""
    value = tx.kv.get("mgmt", ROUTING_VERSION)
    return _U64.unpack(value)[0] if value is not None else 0


def save(tx: MetaTxn, old: ClusterState, new: ClusterState,
         fence: Callable[[MetaTxn], None] | None = None) -> None:
    """Write what differs between `old` (as stored) and `new`; `fence` first checks, in
    the same transaction, that this process is still the primary (mgmt/primary.py)."""
    if fence is not None:
        fence(tx)
    _sync(tx, old.nodes, new.nodes, _node_key, _encode_node)
    _sync(tx, old.targets, new.targets, _target_key, _encode_target)
    _sync(tx, old.chains, new.chains, _chain_key, lambda c: chain_to_proto(c).SerializeToString())
    admin_old: dict[int, Any] = dict.fromkeys(old.admin_offline, True)
    admin_new: dict[int, Any] = dict.fromkeys(new.admin_offline, True)
    _sync(tx, admin_old, admin_new, _admin_key, lambda _: b"")
    if new.routing_version != old.routing_version:
        tx.kv.put("mgmt", ROUTING_VERSION, _U64.pack(new.routing_version))
    if new.chains.keys() != old.chains.keys():
        tx.kv.put("mgmt", CHAIN_SET, _U64.pack(chain_set_version(tx.kv) + 1))


def save_draft(tx: MetaTxn, draft: Draft, fence: Callable[[MetaTxn], None] | None = None, *,
               chain_set_moved: bool | None = None) -> None:
    """Write the records a draft changes (draft.py), nothing else: a decision costs
    what it touched. `fence` as in `save`. `chain_set_moved`: whether the draft adds or
    removes chains, when judged before publish (which folds the draft into its base)."""
    if fence is not None:
        fence(tx)
    for node in draft.nodes.values():
        tx.kv.put("mgmt", _node_key(node.node_id), _encode_node(node))
    for target_id, target in draft.targets.items():
        if target is None:
            tx.kv.delete("mgmt", _target_key(target_id))
        else:
            tx.kv.put("mgmt", _target_key(target_id), _encode_target(target))
    for chain in draft.chains.values():
        tx.kv.put("mgmt", _chain_key(chain.chain_id), chain_to_proto(chain).SerializeToString())
    for chain_id in draft.removed_chains:
        tx.kv.delete("mgmt", _chain_key(chain_id))
    if draft.admin_offline is not None:
        old = draft.base.admin_offline
        for target_id in old - draft.admin_offline:
            tx.kv.delete("mgmt", _admin_key(target_id))
        for target_id in draft.admin_offline - old:
            tx.kv.put("mgmt", _admin_key(target_id), b"")
    if draft.bumps:
        tx.kv.put("mgmt", ROUTING_VERSION, _U64.pack(draft.base.routing_version + draft.bumps))
    if chain_set_moved is None:
        chain_set_moved = bool(draft.removed_chains or draft.chains.keys() - draft.base.chains.keys())
    if chain_set_moved:
        tx.kv.put("mgmt", CHAIN_SET, _U64.pack(chain_set_version(tx.kv) + 1))


def chain_set_version(kv: KvTxn) -> int:
    """Which set of chain ids is stored (0: none recorded)."""
    value = kv.get("mgmt", CHAIN_SET)
    return _U64.unpack(value)[0] if value is not None else 0


def chain_ids(kv: KvTxn) -> list[int]:
    """The stored chain ids, ascending."""
    return [_U32.unpack(key[1:])[0] for key, _ in kv.scan("mgmt", CHAIN, CHAIN + b"\xff") if len(key) == 5]
