"""Create: make a file, or open an existing one (O_CREAT with O_EXCL / O_TRUNC).

As open(2) does, a symlink in last place is followed unless the create is exclusive,
and a dangling one creates its target. Opening an existing file needs w only when it
truncates or opens a write session; a plain non-exclusive create of an existing file
just returns it (reads go straight to storage, so there is no read-open to check). A new
file takes its layout from the request, else from its directory's defaults, and its
chains from the allocator in the context.
The reply's `old_length` is the length before an O_TRUNC, read in the same
transaction, for the caller to remove the old chunks by (truncate.py says why).
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import AlreadyExists, Internal, IsADirectory
from emberfs.proto import meta_pb2

from ..txn import MetaTxn
from .nodes import add_entry, inherit_layout, new_inode
from .perm import W, X, Caller, check
from .resolve import parent_dir, walk
from .session import open_session
from .truncate import apply_truncate, check_file

__all__ = ["create"]


def create(
    tx: MetaTxn,
    caller: Caller,
    parts: Sequence[str],
    *,
    mode: int,
    exclusive: bool = False,
    truncate: bool = False,
    chunk_size: int = 0,
    stripe: int = 0,
    open_for_write: bool = False,
    client_id: str = "",
) -> meta_pb2.CreateResponse:
    if not parts:
        raise AlreadyExists("'/' exists") if exclusive else IsADirectory("'/' is a directory")
    tx.read_ahead(tx.allocator.refresh_keys)  # with the walk's first round trip, not one of its own
    parent, name = parent_dir(tx, caller, parts)
    found = walk(tx, caller, [name], follow_last=not exclusive, start=parent)
    if found.inode is not None:
        return _open_existing(tx, caller, found.inode, exclusive, truncate, open_for_write, client_id)
    assert found.parent is not None and found.name is not None  # a missing name has a parent
    parent, name = found.parent, found.name
    check(caller, parent, W | X, "create")
    layout = inherit_layout(parent, chunk_size, stripe, tx)
    inode = new_inode(tx, caller, parent, meta_pb2.FILE, mode, layout=layout)
    tx.allocator.refresh(tx.kv)
    chains = list(tx.allocator.pick(layout.stripe, inode.inode_id))
    if not all(isinstance(c, int) and 0 <= c < 2**32 for c in chains):
        raise Internal(f"chain allocator returned invalid chain ids {chains!r}")
    inode.layout.chain_ids.extend(chains)
    if chains:  # fewer chains than the stripe asked for: the file spreads over what exists
        inode.layout.stripe = len(chains)
    add_entry(tx, parent, name, inode)
    session_id = open_session(tx, inode, client_id) if open_for_write else 0
    return meta_pb2.CreateResponse(inode=inode, created=True, session_id=session_id)


def _open_existing(
    tx: MetaTxn,
    caller: Caller,
    inode: meta_pb2.Inode,
    exclusive: bool,
    truncate: bool,
    open_for_write: bool,
    client_id: str,
) -> meta_pb2.CreateResponse:
    if exclusive:
        raise AlreadyExists(f"inode {inode.inode_id} already exists")
    check_file(inode)
    if truncate or open_for_write:
        check(caller, inode, W, "open for write")
    # Otherwise the caller only learns the inode, which a Stat would show it anyway.
    old_length = apply_truncate(tx, inode, 0) if truncate else inode.length
    session_id = open_session(tx, inode, client_id) if open_for_write else 0
    return meta_pb2.CreateResponse(inode=inode, created=False, session_id=session_id, old_length=old_length)
