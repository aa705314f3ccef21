"""Plain records of the chunk store and their on-disk encodings (pure, no I/O).

Keys: a chunk is `(inode_id, chunk_index)`, stored as 8-byte big-endian inode then
4-byte big-endian index, so one file's chunks are contiguous and ordered in LMDB
(docs/ARCHITECTURE.md, "On disk").

Values: one fixed-size record per chunk holding the committed version and, while a
write is in flight, the pending one (with the length and CRC32C the chunk will have
once it commits, which crash recovery uses to tell whether a commit reached the
chunk file before the crash). A committed REMOVE leaves a *tombstone*: the record
keeps its version with no bytes, so versions only grow (replication.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from .replication import Digest, Replica

__all__ = [
    "ChunkId",
    "ChunkMeta",
    "ChunkRecord",
    "PendingInfo",
    "TargetStats",
    "UpdateKind",
    "decode_key",
    "decode_record",
    "encode_key",
    "encode_record",
    "inode_prefix",
]

_KEY = struct.Struct(">QI")
_INODE = struct.Struct(">Q")
# format, commit_version, chain_version, length, crc32c,
# pending_version (0: none), pending_kind, pending_length, pending_crc32c, pending_chain_version
_RECORD_V1 = struct.Struct(">BQQIIQBIIQ")
# format 2 adds flags (bit 0: the committed version is a tombstone)
_RECORD = struct.Struct(">BQQIIQBIIQB")
_RECORD_FORMAT = 2
_TOMBSTONE = 1


class UpdateKind(IntEnum):
    """The kinds of chunk update (proto: storage.UpdateKind, same numbers)."""

    WRITE = 1
    """Write data at an offset, zero-filling a gap and extending the chunk."""
    TRUNCATE = 2
    """Set the chunk length (shrink, or extend with zeros)."""
    REPLACE = 3
    """The whole chunk becomes the data (resync; forwarding to a syncing target)."""
    REMOVE = 4
    """The chunk ceases to exist."""


class ChunkId(NamedTuple):
    inode_id: int
    chunk_index: int


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """What the target LMDB stores for one chunk (a pending-only chunk has
    commit_version 0: no committed bytes yet)."""

    commit_version: int = 0
    chain_version: int = 0
    length: int = 0
    crc32c: int = 0
    pending_version: int | None = None
    pending_kind: UpdateKind | None = None
    pending_length: int = 0
    pending_crc32c: int = 0
    pending_chain_version: int = 0
    tombstone: bool = False
    """The committed version is a REMOVE: no bytes, the version is kept."""

    @property
    def committed(self) -> bool:
        """Committed bytes exist (not a tombstone, not pending-only)."""
        return self.commit_version > 0 and not self.tombstone

    def without_pending(self) -> ChunkRecord | None:
        """The record once its pending version is dropped (None: nothing left)."""
        if self.commit_version == 0:
            return None
        return ChunkRecord(self.commit_version, self.chain_version, self.length, self.crc32c,
                           tombstone=self.tombstone)

    @property
    def committed_digest(self) -> Digest:
        return Digest(True, self.length, self.crc32c) if self.committed else Digest(False)

    @property
    def pending_digest(self) -> Digest | None:
        if self.pending_version is None:
            return None
        if self.pending_kind == UpdateKind.REMOVE:
            return Digest(False)
        return Digest(True, self.pending_length, self.pending_crc32c)

    @property
    def replica(self) -> Replica:
        """This record as the replication rules see it."""
        return Replica(self.commit_version, self.committed_digest, self.pending_version, self.pending_digest)


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """A chunk's state as callers see it."""

    chunk_id: ChunkId
    exists: bool  # committed bytes exist (False: a hole, reads as zeros)
    commit_version: int
    pending_version: int | None
    chain_version: int
    length: int
    crc32c: int  # CRC32C of the whole committed chunk
    pending: Digest | None = None  # what the pending version holds

    @property
    def digest(self) -> Digest:
        return Digest(True, self.length, self.crc32c) if self.exists else Digest(False)

    @property
    def replica(self) -> Replica:
        """The chunk as the replication rules see it (a tombstone keeps its version)."""
        pending = self.pending
        if self.pending_version is not None and pending is None:
            raise ValueError("ChunkMeta with a pending version but no pending digest")
        return Replica(self.commit_version, self.digest, self.pending_version, pending)


@dataclass(frozen=True, slots=True)
class PendingInfo:
    """The result of `prepare`: what the chunk will be once `update_version` commits."""

    chunk_id: ChunkId
    kind: UpdateKind
    update_version: int
    commit_version: int  # still the committed one
    chain_version: int
    length: int  # the chunk length after commit (0 for REMOVE)
    crc32c: int  # CRC32C of the whole chunk after commit


@dataclass(frozen=True, slots=True)
class TargetStats:
    chunks: int  # committed chunks
    bytes: int  # sum of committed chunk lengths
    pending: int  # chunks with a write in flight
    capacity_bytes: int  # of the file system holding the target
    free_bytes: int  # available to an unprivileged writer


def encode_key(chunk_id: ChunkId) -> bytes:
    return _KEY.pack(chunk_id.inode_id, chunk_id.chunk_index)


def decode_key(key: bytes) -> ChunkId:
    return ChunkId(*_KEY.unpack(key))


def inode_prefix(inode_id: int) -> bytes:
    return _INODE.pack(inode_id)


def encode_record(record: ChunkRecord) -> bytes:
    return _RECORD.pack(
        _RECORD_FORMAT,
        record.commit_version,
        record.chain_version,
        record.length,
        record.crc32c,
        record.pending_version or 0,
        int(record.pending_kind or 0),
        record.pending_length,
        record.pending_crc32c,
        record.pending_chain_version,
        _TOMBSTONE if record.tombstone else 0,
    )


def decode_record(value: bytes) -> ChunkRecord:
    fmt = value[0] if value else 0
    if fmt == 1:  # written before tombstones: a record always had bytes or only a pending version
        flags = 0
        _, commit, chain, length, crc, pend, kind, plen, pcrc, pchain = _RECORD_V1.unpack(value)
    elif fmt == _RECORD_FORMAT:
        _, commit, chain, length, crc, pend, kind, plen, pcrc, pchain, flags = _RECORD.unpack(value)
    else:
        raise ValueError(f"unknown chunk record format {fmt}")
    pending_kind = UpdateKind(kind) if kind else None
    return ChunkRecord(commit, chain, length, crc, pend or None, pending_kind, plen, pcrc, pchain,
                       tombstone=bool(flags & _TOMBSTONE))
