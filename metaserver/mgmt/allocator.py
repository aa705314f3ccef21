"""The chain allocator the running metaserver uses: new files take their chains
from the cluster manager's chain table (`common.layout.pick_chains`, seeded by the
inode id so consecutive files start on different chains).

It keeps an in-memory copy of the chain ids instead of reading the `mgmt` database
inside the create's transaction: the allocator protocol gets no transaction, the
copy is one tuple read (atomic in Python) on the writer thread, and the set of chain
ids only changes when InitChains commits. The manager installs the new ids only
after that commit is durable, so no file ever names a chain that is not stored; a
create racing with InitChains gets either no chains or the new ones, both of which
are orders the two operations could have run in.
"""

from __future__ import annotations

from collections.abc import Iterable

from emberfs.common.layout import pick_chains

__all__ = ["TableChains"]


class TableChains:
    """ChainAllocator (metaserver/allocator.py) over the chain table."""

    def __init__(self, chain_ids: Iterable[int] = ()) -> None:
        self._chain_ids: tuple[int, ...] = tuple(sorted(chain_ids))

    @property
    def chain_ids(self) -> tuple[int, ...]:
        return self._chain_ids

    def update(self, chain_ids: Iterable[int]) -> None:
        self._chain_ids = tuple(sorted(chain_ids))

    def pick(self, stripe: int, inode_id: int) -> list[int]:
        """`stripe` chains (fewer when fewer exist; none before InitChains)."""
        chain_ids = self._chain_ids
        if not chain_ids:
            return []
        return pick_chains(chain_ids, stripe, seed=inode_id)
