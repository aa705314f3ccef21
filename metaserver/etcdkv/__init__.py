"""The etcd engine of the metadata store (docs/ARCHITECTURE.md, "Metadata engines").

    optimistic.py  OptimisticKv: one transaction's reads, scans and writes; its commit plan
    store.py       EtcdStore: MetaStore's interface; retries, unknown outcomes, id batches
"""
