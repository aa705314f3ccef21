"""etcd as the metadata store's replicated engine: a synchronous etcd v3 client over our
own stubs of etcd's API (proto/etcd_rpc.proto) and a launcher for local clusters.

    client.py   EtcdClient (thread-safe, fails over between members), LeaseKeeper
    model.py    KV, Compare, Op, RangeResult, TxnResult, MemberStatus, prefix_end
    errors.py   OutcomeUnknown, LimitExceeded, and the gRPC/etcd error verdicts
    wire.py     records <-> etcd messages
    launch.py   EtcdCluster: 1 or 3 local etcd members (Debian's etcd-server)
"""

from .client import DEFAULT_MAX_REQUEST_BYTES, EtcdClient, LeaseKeeper
from .errors import LimitExceeded, OutcomeUnknown
from .model import KV, Compare, CompareOp, CompareTarget, MemberStatus, Op, OpKind, OpResult, RangeResult, TxnResult
from .model import prefix_end

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "KV",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "EtcdClient",
    "LeaseKeeper",
    "LimitExceeded",
    "MemberStatus",
    "Op",
    "OpKind",
    "OpResult",
    "OutcomeUnknown",
    "RangeResult",
    "TxnResult",
    "prefix_end",
]
