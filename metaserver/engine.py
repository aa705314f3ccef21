"""What the services need of a namespace store, and opening the configured one.

Two engines keep the namespace (docs/ARCHITECTURE.md, "Metadata engines"): `MetaStore`
(store.py: LMDB in the data dir, one writer thread, group commit) and `EtcdStore`
(etcdkv/store.py: optimistic transactions on etcd, shared by several metaservers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from .allocator import ChainAllocator
from .config import MetaConfig
from .store import MetaStore
from .txn import MetaTxn

__all__ = ["ETCD_TIMEOUT_S", "Store", "open_store"]

_T = TypeVar("_T")

# An etcd call's bound: after a leader dies, a request sent to a member still following it
# waits this long before the client moves on, so it bounds the stall of a failover.
ETCD_TIMEOUT_S = 2.0


class Store(Protocol):
    allocator: ChainAllocator

    async def write(self, fn: Callable[[MetaTxn], _T]) -> _T:
        """fn in a write transaction; resolves once it is durably committed."""
        ...

    def write_sync(self, fn: Callable[[MetaTxn], _T]) -> _T: ...

    def read(self, fn: Callable[[MetaTxn], _T]) -> _T:
        """fn on one consistent state, blocking (startup, tools, tests)."""
        ...

    async def aread(self, fn: Callable[[MetaTxn], _T]) -> _T: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def open_store(config: MetaConfig) -> Store:
    """The namespace store of the configured engine."""
    if config.engine == "lmdb":
        return MetaStore(config)
    from .etcdkv.adapter import ClientEtcd
    from .etcdkv.client import EtcdClient
    from .etcdkv.store import EtcdStore

    client = EtcdClient(list(config.etcd_endpoints), timeout=ETCD_TIMEOUT_S)
    try:
        return EtcdStore(config, ClientEtcd(client), root=config.etcd_prefix.encode(),
                         max_ops=config.etcd_max_txn_ops)
    except BaseException:
        client.close()
        raise
