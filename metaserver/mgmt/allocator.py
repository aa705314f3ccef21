"""The chain allocator the running metaserver uses: new files take their chains
from the cluster manager's chain table (`common.layout.pick_chains`, seeded by the
inode id so consecutive files start on different chains).

It keeps an in-memory copy of the chain ids instead of scanning the chain table in
every create: the copy is one tuple read (atomic in Python), and the set of chain
ids only changes when InitChains commits. The manager installs the new ids only
after that commit is durable, so no file ever names a chain that is not stored; a
create racing with InitChains gets either no chains or the new ones, both of which
are orders the two operations could have run in.

Another metaserver may have committed the change (several metaservers share the etcd
engine's store, and only the primary manages): each create first reads the stored
version of the chain set in its own transaction (`refresh`, one key) and reloads the
ids from that transaction when the version moved, so a standby never places a new
file on no chains, or on an old set, after InitChains.
"""

from __future__ import annotations

from collections.abc import Iterable

from emberfs.common.layout import pick_chains

from ..kv import KvTxn
from . import table

__all__ = ["TableChains"]


class TableChains:
    """ChainAllocator (metaserver/allocator.py) over the chain table."""

    refresh_keys: tuple[tuple[str, bytes], ...] = (("mgmt", table.CHAIN_SET),)

    def __init__(self, chain_ids: Iterable[int] = ()) -> None:
        self._chain_ids: tuple[int, ...] = tuple(sorted(chain_ids))
        self._version = 0  # the stored chain-set version the ids were read at (0: not read)

    @property
    def chain_ids(self) -> tuple[int, ...]:
        return self._chain_ids

    def update(self, chain_ids: Iterable[int]) -> None:
        self._chain_ids = tuple(sorted(chain_ids))

    def refresh(self, kv: KvTxn) -> None:
        stored = table.chain_set_version(kv)
        if stored != self._version:
            self._chain_ids = tuple(table.chain_ids(kv))
            self._version = stored

    def pick(self, stripe: int, inode_id: int) -> list[int]:
        """`stripe` chains (fewer when fewer exist; none before InitChains)."""
        chain_ids = self._chain_ids
        if not chain_ids:
            return []
        return pick_chains(chain_ids, stripe, seed=inode_id)
