"""The transaction context every metadata operation runs in.

`MetaTxn` wraps one LMDB transaction (a nested child of the writer's group-commit
transaction, or a short read transaction) and gives typed access to the named
databases. It owns the on-disk encodings, so no operation touches bytes:

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

import dataclasses
import struct
from collections.abc import Iterator
from typing import NamedTuple

import lmdb

from emberfs.common.errors import NotFound
from emberfs.proto import meta_pb2

from .allocator import ChainAllocator
from .config import MetaConfig

__all__ = [
    "DB_NAMES",
    "DIRECTORIES",
    "FILES",
    "NEXT_INODE",
    "NEXT_SESSION",
    "ROOT_ID",
    "SYMLINKS",
    "USED_BYTES",
    "Dbs",
    "Entry",
    "MetaTxn",
]

ROOT_ID = 1
DB_NAMES = ("inodes", "dirents", "gc", "idem", "sessions", "mgmt", "counters")

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


@dataclasses.dataclass(frozen=True)
class Dbs:
    """Handles of the named databases of one environment."""

    inodes: lmdb._Database
    dirents: lmdb._Database
    gc: lmdb._Database
    idem: lmdb._Database
    sessions: lmdb._Database
    mgmt: lmdb._Database
    counters: lmdb._Database


class Entry(NamedTuple):
    name: str
    child_id: int
    type: int  # meta_pb2.InodeType


def _dirent_prefix(parent_id: int) -> bytes:
    return _U64.pack(parent_id)


def _dirent_key(parent_id: int, name: str) -> bytes:
    return _U64.pack(parent_id) + name.encode("utf-8")


class MetaTxn:
    """Typed access to one LMDB transaction plus the op's environment."""

    def __init__(
        self,
        txn: lmdb.Transaction,
        dbs: Dbs,
        *,
        config: MetaConfig,
        allocator: ChainAllocator,
        now_ns: int,
    ) -> None:
        self.raw = txn
        self.dbs = dbs
        self.config = config
        self.allocator = allocator
        self.now_ns = now_ns

    # -- inodes -------------------------------------------------------------
    def get_inode(self, inode_id: int) -> meta_pb2.Inode | None:
        raw = self.raw.get(_U64.pack(inode_id), db=self.dbs.inodes)
        return None if raw is None else meta_pb2.Inode.FromString(raw)

    def inode(self, inode_id: int) -> meta_pb2.Inode:
        """The inode, or NotFound (e.g. a directory entry whose inode is gone)."""
        found = self.get_inode(inode_id)
        if found is None:
            raise NotFound(f"inode {inode_id} does not exist")
        return found

    def put_inode(self, inode: meta_pb2.Inode) -> None:
        self.raw.put(_U64.pack(inode.inode_id), inode.SerializeToString(), db=self.dbs.inodes)

    def delete_inode(self, inode_id: int) -> None:
        self.raw.delete(_U64.pack(inode_id), db=self.dbs.inodes)

    # -- directory entries --------------------------------------------------
    def lookup(self, parent_id: int, name: str) -> Entry | None:
        raw = self.raw.get(_dirent_key(parent_id, name), db=self.dbs.dirents)
        if raw is None:
            return None
        child_id, kind = _DIRENT.unpack(raw)
        return Entry(name, child_id, kind)

    def put_entry(self, parent_id: int, name: str, child_id: int, kind: int) -> None:
        self.raw.put(_dirent_key(parent_id, name), _DIRENT.pack(child_id, kind), db=self.dbs.dirents)

    def delete_entry(self, parent_id: int, name: str) -> None:
        self.raw.delete(_dirent_key(parent_id, name), db=self.dbs.dirents)

    def entries(self, parent_id: int, start_after: str = "") -> Iterator[Entry]:
        """A directory's entries in bytewise name order, strictly after start_after."""
        prefix = _dirent_prefix(parent_id)
        after = _dirent_key(parent_id, start_after) if start_after else None
        with self.raw.cursor(db=self.dbs.dirents) as cursor:
            if not cursor.set_range(after or prefix):
                return
            for raw_key, value in cursor:
                key = bytes(raw_key)  # bytes already (buffers=False): no copy
                if not key.startswith(prefix):
                    return
                if key == after:
                    continue
                child_id, kind = _DIRENT.unpack(value)
                yield Entry(key[len(prefix):].decode("utf-8"), child_id, kind)

    def has_entries(self, parent_id: int) -> bool:
        return next(self.entries(parent_id), None) is not None

    # -- counters -----------------------------------------------------------
    def counter(self, name: bytes) -> int:
        raw = self.raw.get(name, db=self.dbs.counters)
        return 0 if raw is None else int.from_bytes(raw, "big", signed=True)

    def add_counter(self, name: bytes, delta: int) -> int:
        value = self.counter(name) + delta
        self.raw.put(name, value.to_bytes(16, "big", signed=True), db=self.dbs.counters)
        return value

    def next_id(self, name: bytes) -> int:
        return self.add_counter(name, 1)

    # -- garbage of deleted files --------------------------------------------
    def put_gc(self, inode: meta_pb2.Inode) -> None:
        self.raw.put(_U64.pack(inode.inode_id), inode.SerializeToString(), db=self.dbs.gc)

    def delete_gc(self, inode_id: int) -> bool:
        """Drop a gc record once every chain has removed the file's chunks."""
        return bool(self.raw.delete(_U64.pack(inode_id), db=self.dbs.gc))

    def gc_records(self) -> Iterator[meta_pb2.Inode]:
        with self.raw.cursor(db=self.dbs.gc) as cursor:
            for _key, value in cursor:
                yield meta_pb2.Inode.FromString(value)

    # -- write sessions -------------------------------------------------------
    def put_session(self, inode_id: int, session_id: int, client_id: str) -> None:
        key = _U64.pack(inode_id) + _U64.pack(session_id)
        value = _SESSION.pack(self.now_ns) + client_id.encode("utf-8")
        self.raw.put(key, value, db=self.dbs.sessions)

    def has_session(self, inode_id: int, session_id: int) -> bool:
        key = _U64.pack(inode_id) + _U64.pack(session_id)
        return self.raw.get(key, db=self.dbs.sessions) is not None

    def delete_session(self, inode_id: int, session_id: int) -> bool:
        key = _U64.pack(inode_id) + _U64.pack(session_id)
        return bool(self.raw.delete(key, db=self.dbs.sessions))

    def delete_sessions_of(self, inode_id: int) -> None:
        prefix = _U64.pack(inode_id)
        with self.raw.cursor(db=self.dbs.sessions) as cursor:
            if not cursor.set_range(prefix):
                return
            while bytes(cursor.key()).startswith(prefix):
                if not cursor.delete():  # delete moves to the next record
                    return

    def sessions_of(self, inode_id: int) -> list[int]:
        prefix = _U64.pack(inode_id)
        out = []
        with self.raw.cursor(db=self.dbs.sessions) as cursor:
            if cursor.set_range(prefix):
                for key in cursor.iternext(values=False):
                    if not bytes(key).startswith(prefix):
                        break
                    out.append(_U64.unpack_from(key, 8)[0])
        return out
