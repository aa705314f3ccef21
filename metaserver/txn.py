"""The transaction context every metadata operation runs in.

`MetaTxn` wraps one transaction of the KV interface (kv.py: an LMDB child of the
writer's group-commit transaction, a short LMDB read transaction, or an optimistic etcd
transaction) and gives typed access to its tables. It owns the stored encodings, so no
operation touches bytes:

    inodes    u64be inode_id                  -> serialized meta_pb2.Inode
    dirents   u64be parent_id ‖ UTF-8 name    -> u64be child_id ‖ u8 InodeType
    gc        u64be inode_id                  -> serialized Inode (layout, length)
    sessions  u64be inode_id ‖ u64be session  -> i64be opened_ns ‖ UTF-8 client_id
    counters  ASCII name                      -> i128be value
    idem      (see idem.py)

Dirent keys put one directory's entries side by side in name order, which is what
makes paged listing a single cursor walk. Session keys lead with the inode so that
destroying an inode drops its sessions with one range delete.
The context also carries the op's inputs that are not in the request: the server
config (layout defaults, list limits), the chain allocator and the clock reading.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from emberfs.common.errors import NotFound
from emberfs.proto import meta_pb2

from .allocator import ChainAllocator
from .config import MetaConfig
from .kv import TABLES, KvTxn, prefix_end

__all__ = [
    "DB_NAMES",
    "DIRECTORIES",
    "FILES",
    "NEXT_INODE",
    "NEXT_SESSION",
    "ROOT_ID",
    "SYMLINKS",
    "USED_BYTES",
    "Entry",
    "MetaTxn",
]

ROOT_ID = 1
DB_NAMES = TABLES

# Counter names.
FILES = b"files"
DIRECTORIES = b"directories"
SYMLINKS = b"symlinks"
USED_BYTES = b"used_bytes"
NEXT_INODE = b"next_inode"      # the last inode id handed out
NEXT_SESSION = b"next_session"  # the last session id handed out

_U64 = struct.Struct(">Q")
_DIRENT = struct.Struct(">QB")
_SESSION = struct.Struct(">q")


class Entry(NamedTuple):
    name: str
    child_id: int
    type: int  # meta_pb2.InodeType


def _dirent_prefix(parent_id: int) -> bytes:
    return _U64.pack(parent_id)


def _dirent_key(parent_id: int, name: str) -> bytes:
    return _U64.pack(parent_id) + name.encode("utf-8")


class MetaTxn:
    """Typed access to one KV transaction plus the op's environment."""

    def __init__(
        self,
        kv: KvTxn,
        *,
        config: MetaConfig,
        allocator: ChainAllocator,
        now_ns: int,
        ids: Callable[[bytes], int] | None = None,
    ) -> None:
        self.kv = kv
        self.ids = ids
        self.config = config
        self.allocator = allocator
        self.now_ns = now_ns
        self._ahead: list[tuple[str, bytes]] = []  # keys the op will read: fetched with the walk's first step

    # -- inodes -------------------------------------------------------------
    def get_inode(self, inode_id: int) -> meta_pb2.Inode | None:
        raw = self.kv.get("inodes", _U64.pack(inode_id))
        return None if raw is None else meta_pb2.Inode.FromString(raw)

    def inode(self, inode_id: int) -> meta_pb2.Inode:
        """The inode, or NotFound (e.g. a directory entry whose inode is gone)."""
        found = self.get_inode(inode_id)
        if found is None:
            raise NotFound(f"inode {inode_id} does not exist")
        return found

    def put_inode(self, inode: meta_pb2.Inode) -> None:
        self.kv.put("inodes", _U64.pack(inode.inode_id), inode.SerializeToString())

    def delete_inode(self, inode_id: int) -> None:
        self.kv.delete("inodes", _U64.pack(inode_id))

    def prefetch_step(self, inode_id: int, name: str | None) -> None:
        """A path walk's next reads in one go: the inode, and its entry `name` (if any)."""
        keys = [("inodes", _U64.pack(inode_id))]
        if name:
            keys.append(("dirents", _dirent_key(inode_id, name)))
        keys += self._ahead
        self._ahead = []
        self.kv.prefetch(keys)

    def read_ahead(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """(table, key)s this operation will read: fetched together with the path walk's
        next step instead of a round trip of their own (the etcd engine)."""
        self._ahead.extend(keys)

    # -- directory entries --------------------------------------------------
    def lookup(self, parent_id: int, name: str) -> Entry | None:
        raw = self.kv.get("dirents", _dirent_key(parent_id, name))
        if raw is None:
            return None
        child_id, kind = _DIRENT.unpack(raw)
        return Entry(name, child_id, kind)

    def put_entry(self, parent_id: int, name: str, child_id: int, kind: int) -> None:
        self.kv.put("dirents", _dirent_key(parent_id, name), _DIRENT.pack(child_id, kind))

    def delete_entry(self, parent_id: int, name: str) -> None:
        self.kv.delete("dirents", _dirent_key(parent_id, name))

    def entries(self, parent_id: int, start_after: str = "", limit: int = 0) -> Iterator[Entry]:
        """A directory's entries in bytewise name order, strictly after start_after (at
        most `limit` when limit > 0)."""
        prefix = _dirent_prefix(parent_id)
        # The least key after `prefix + start_after` is that key plus a NUL byte.
        start = _dirent_key(parent_id, start_after) + b"\0" if start_after else prefix
        for key, value in self.kv.scan("dirents", start, prefix_end(prefix), limit=limit):
            child_id, kind = _DIRENT.unpack(value)
            yield Entry(key[len(prefix):].decode("utf-8"), child_id, kind)

    def has_entries(self, parent_id: int) -> bool:
        return next(self.entries(parent_id, limit=1), None) is not None

    # -- counters -----------------------------------------------------------
    def counter(self, name: bytes) -> int:
        return self.kv.total("counters", name)

    def add_counter(self, name: bytes, delta: int) -> None:
        self.kv.add("counters", name, delta)

    def next_id(self, name: bytes) -> int:
        """A new inode or session id: from the engine's id batches when it has them (ids
        then only grow, with gaps), else the next value of the counter."""
        if self.ids is not None:
            return self.ids(name)
        value = self.counter(name) + 1
        self.add_counter(name, 1)
        return value

    # -- garbage of deleted files --------------------------------------------
    def put_gc(self, inode: meta_pb2.Inode) -> None:
        self.kv.put("gc", _U64.pack(inode.inode_id), inode.SerializeToString())

    def delete_gc(self, inode_id: int) -> bool:
        """Drop a gc record once every chain has removed the file's chunks."""
        return self.kv.delete("gc", _U64.pack(inode_id))

    def gc_records(self, limit: int = 0) -> Iterator[meta_pb2.Inode]:
        for _key, value in self.kv.scan("gc", limit=limit):
            yield meta_pb2.Inode.FromString(value)

    # -- write sessions -------------------------------------------------------
    def put_session(self, inode_id: int, session_id: int, client_id: str) -> None:
        key = _U64.pack(inode_id) + _U64.pack(session_id)
        value = _SESSION.pack(self.now_ns) + client_id.encode("utf-8")
        self.kv.put("sessions", key, value)

    def has_session(self, inode_id: int, session_id: int) -> bool:
        key = _U64.pack(inode_id) + _U64.pack(session_id)
        return self.kv.get("sessions", key) is not None

    def delete_session(self, inode_id: int, session_id: int) -> bool:
        key = _U64.pack(inode_id) + _U64.pack(session_id)
        return self.kv.delete("sessions", key)

    def delete_sessions_of(self, inode_id: int) -> None:
        for key in [key for key, _ in self._sessions(inode_id)]:
            self.kv.delete("sessions", key)

    def sessions_of(self, inode_id: int) -> list[int]:
        return [_U64.unpack_from(key, 8)[0] for key, _ in self._sessions(inode_id)]

    def _sessions(self, inode_id: int) -> Iterator[tuple[bytes, bytes]]:
        prefix = _U64.pack(inode_id)
        return self.kv.scan("sessions", prefix, prefix_end(prefix))
