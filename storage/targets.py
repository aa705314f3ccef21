"""The node's K targets on disk and the node-id file that pins a data dir to one node.

`<data-dir>/NODE_ID` holds the node id written at first start; a data dir made for
another node refuses to start (a clear error: mixing two nodes' chunks would corrupt
both chains). Target k (1..K) lives in `<data-dir>/target-<k>/` and has
target_id = node_id * 100 + k.
"""

from __future__ import annotations

import os

from emberfs.common.errors import FailedPrecondition

from .chunkstore import ChunkStore

__all__ = ["NODE_ID_FILE", "check_node_id", "open_targets", "target_id_of"]

NODE_ID_FILE = "NODE_ID"


def target_id_of(node_id: int, k: int) -> int:
    return node_id * 100 + k


def check_node_id(data_dir: str, node_id: int) -> None:
    """Write the node id on first use; refuse a data dir that belongs to another node."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, NODE_ID_FILE)
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{node_id}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    if text != str(node_id):
        raise FailedPrecondition(
            f"data dir {data_dir} belongs to node {text!r}, not node {node_id}: "
            f"use --node-id {text} or another --data-dir"
        )


def open_targets(data_dir: str, node_id: int, count: int) -> dict[int, ChunkStore]:
    """Open (creating as needed) targets 1..count; all or nothing."""
    check_node_id(data_dir, node_id)
    stores: dict[int, ChunkStore] = {}
    try:
        for k in range(1, count + 1):
            stores[target_id_of(node_id, k)] = ChunkStore(os.path.join(data_dir, f"target-{k}"))
    except BaseException:
        for store in stores.values():
            store.close()
        raise
    return stores
