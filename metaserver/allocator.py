"""Where a new file's chains come from.

The store hands an allocator to every operation; `create` asks it for the file's
ordered chain list. The default knows no chains (a namespace without storage), so
files get an empty list; the running server installs the cluster manager's
`mgmt.allocator.TableChains`, backed by its chain table (server.build_server).
"""

from __future__ import annotations

from typing import Protocol

from .kv import KvTxn

__all__ = ["ChainAllocator", "NoChains"]


class ChainAllocator(Protocol):
    refresh_keys: tuple[tuple[str, bytes], ...]  # what `refresh` reads: a create reads them ahead

    def refresh(self, kv: KvTxn) -> None:
        """Make sure the chain ids are the stored ones, as of the transaction `kv` (a
        create calls it first)."""
        ...

    def pick(self, stripe: int, inode_id: int) -> list[int]:
        """The ordered chain ids for a new file of `stripe` chains (may be empty)."""
        ...


class NoChains:
    """The allocator before any chain table exists: files get no chains."""

    refresh_keys: tuple[tuple[str, bytes], ...] = ()

    def refresh(self, kv: KvTxn) -> None:
        return None

    def pick(self, stripe: int, inode_id: int) -> list[int]:
        return []
