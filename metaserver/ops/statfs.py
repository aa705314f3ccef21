"""StatFs: namespace totals, read from the counters kept by every change."""

from __future__ import annotations

from emberfs.proto import meta_pb2

from ..txn import DIRECTORIES, FILES, SYMLINKS, USED_BYTES, MetaTxn
from .perm import Caller

__all__ = ["statfs"]


def statfs(tx: MetaTxn, caller: Caller) -> meta_pb2.StatFsResponse:
    files, dirs, links = tx.counter(FILES), tx.counter(DIRECTORIES), tx.counter(SYMLINKS)
    # Capacity comes from storage targets, which the cluster manager will report.
    return meta_pb2.StatFsResponse(
        inodes=files + dirs + links,
        files=files,
        directories=dirs,
        symlinks=links,
        used_bytes=tx.counter(USED_BYTES),
    )
