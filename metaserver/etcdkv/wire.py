"""Conversions between the client's records (model.py) and etcd's messages.

Pure: no I/O. Each Compare target sets its own member of etcd's `target_union`
oneof; etcd reads the member that matches `target`, so a wrong pairing would compare
against 0 silently. That is why only these functions build Compare messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.proto import etcd_kv_pb2, etcd_rpc_pb2

from .model import KV, Compare, CompareTarget, MemberStatus, Op, OpKind, OpResult, RangeResult, TxnResult

__all__ = [
    "compare_to_pb",
    "kv_from_pb",
    "op_to_pb",
    "range_request",
    "range_result",
    "status_from_pb",
    "txn_request",
    "txn_result",
]

_UNION_FIELD = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
    CompareTarget.LEASE: "lease",
}


def compare_to_pb(compare: Compare) -> etcd_rpc_pb2.Compare:
    # Our enums carry etcd's names, so the message takes them by name.
    msg = etcd_rpc_pb2.Compare(result=compare.op.name, target=compare.target.name, key=compare.key,
                               range_end=compare.range_end)
    setattr(msg, _UNION_FIELD[compare.target], compare.value)
    return msg


def range_request(start: bytes, end: bytes = b"", *, revision: int = 0, limit: int = 0, keys_only: bool = False,
                  serializable: bool = False) -> etcd_rpc_pb2.RangeRequest:
    return etcd_rpc_pb2.RangeRequest(key=start, range_end=end, revision=revision, limit=limit, keys_only=keys_only,
                                     serializable=serializable)


def op_to_pb(op: Op) -> etcd_rpc_pb2.RequestOp:
    if op.kind is OpKind.GET:
        return etcd_rpc_pb2.RequestOp(
            request_range=range_request(op.key, op.range_end, limit=op.limit, keys_only=op.keys_only,
                                        revision=op.revision, serializable=op.serializable))
    if op.kind is OpKind.PUT:
        return etcd_rpc_pb2.RequestOp(request_put=etcd_rpc_pb2.PutRequest(key=op.key, value=op.value, lease=op.lease))
    return etcd_rpc_pb2.RequestOp(request_delete_range=etcd_rpc_pb2.DeleteRangeRequest(key=op.key,
                                                                                       range_end=op.range_end))


def txn_request(compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> etcd_rpc_pb2.TxnRequest:
    return etcd_rpc_pb2.TxnRequest(
        compare=[compare_to_pb(c) for c in compares],
        success=[op_to_pb(op) for op in success],
        failure=[op_to_pb(op) for op in failure],
    )


def kv_from_pb(msg: etcd_kv_pb2.KeyValue) -> KV:
    return KV(key=msg.key, value=msg.value, mod_revision=msg.mod_revision, create_revision=msg.create_revision,
              version=msg.version, lease=msg.lease)


def range_result(msg: etcd_rpc_pb2.RangeResponse) -> RangeResult:
    return RangeResult([kv_from_pb(kv) for kv in msg.kvs], msg.header.revision, msg.more)


def _op_result(msg: etcd_rpc_pb2.ResponseOp) -> OpResult:
    which = msg.WhichOneof("response")
    if which == "response_range":
        return OpResult(OpKind.GET, kvs=[kv_from_pb(kv) for kv in msg.response_range.kvs],
                        more=msg.response_range.more)
    if which == "response_delete_range":
        return OpResult(OpKind.DELETE, deleted=msg.response_delete_range.deleted)
    return OpResult(OpKind.PUT)


def txn_result(msg: etcd_rpc_pb2.TxnResponse) -> TxnResult:
    return TxnResult(msg.succeeded, msg.header.revision, [_op_result(r) for r in msg.responses])


def status_from_pb(endpoint: str, msg: etcd_rpc_pb2.StatusResponse) -> MemberStatus:
    return MemberStatus(endpoint=endpoint, member_id=msg.header.member_id, leader=msg.leader, raft_term=msg.raftTerm,
                        raft_index=msg.raftIndex, version=msg.version, db_size=msg.dbSize, errors=tuple(msg.errors),
                        is_learner=msg.isLearner)
