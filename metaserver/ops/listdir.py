"""List: one page of a directory, in bytewise name order, resumable by name.

A page holds at most `limit` entries (0: the server default; never more than
max_list_page). `more` is set when another entry follows, found by reading one
entry past the page, so a client never needs an extra empty round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

from emberfs.common.errors import NotADirectory
from emberfs.proto import meta_pb2

from ..txn import MetaTxn
from .perm import R, Caller, check
from .resolve import lookup

__all__ = ["listdir"]


def listdir(
    tx: MetaTxn,
    caller: Caller,
    parts: Sequence[str],
    *,
    start_after: str = "",
    limit: int = 0,
    with_attrs: bool = False,
) -> meta_pb2.ListResponse:
    directory = lookup(tx, caller, parts, follow=True)
    if directory.type != meta_pb2.DIRECTORY:
        raise NotADirectory("not a directory")
    check(caller, directory, R, "list")
    page = min(limit or tx.config.default_list_page, tx.config.max_list_page)
    reply = meta_pb2.ListResponse()
    for entry in tx.entries(directory.inode_id, start_after):
        if len(reply.entries) == page:
            reply.more = True
            break
        item = reply.entries.add(name=entry.name, inode_id=entry.child_id, type=entry.type)  # type: ignore[arg-type]
        if with_attrs:
            item.inode.CopyFrom(tx.inode(entry.child_id))
    return reply
