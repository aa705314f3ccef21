"""Stat: the inode a path names (lstat when not following a final symlink)."""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.proto import meta_pb2

from ..txn import MetaTxn
from .perm import Caller
from .resolve import lookup

__all__ = ["stat"]


def stat(tx: MetaTxn, caller: Caller, parts: Sequence[str], *, follow_symlinks: bool) -> meta_pb2.StatResponse:
    return meta_pb2.StatResponse(inode=lookup(tx, caller, parts, follow=follow_symlinks))
