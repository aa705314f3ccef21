"""The etcd engine of the metadata store (docs/ARCHITECTURE.md, "Metadata engines").

    optimistic.py  OptimisticKv: one transaction's reads, scans and writes; its commit plan
    store.py       EtcdStore: MetaStore's interface; retries, unknown outcomes, id batches

and the etcd client it runs on, over our own stubs of etcd's v3 API (proto/etcd_rpc.proto):

    client.py      EtcdClient: synchronous, thread-safe, fails over between members; LeaseKeeper
    model.py       the client's records: KV, Compare, Op, RangeResult, TxnResult, MemberStatus
    errors.py      OutcomeUnknown, LimitExceeded, and the verdict on each gRPC/etcd failure
    wire.py        the client's records <-> etcd's messages
    launch.py      EtcdCluster: 1 or 3 local etcd members (Debian's etcd-server)
"""
