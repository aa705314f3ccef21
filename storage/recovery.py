"""Crash recovery of one target, run when its store opens.

A crash can leave, for a chunk with a pending version (found through the pending
index, so no directory walk is needed):
- a pending file and the committed file untouched: a whole pending file (its
  length and CRC32C are the recorded ones) is kept pending, since a former
  successor may have committed and served that version (replication.recovered);
  a half-built one is discarded;
- the pending file already renamed over the chunk file, the metadata not yet
  updated: the chunk file then holds exactly the pending length and CRC32C, and
  the commit is finished (rolled forward) instead, because the data on disk is no
  longer the committed version the metadata names;
- for a pending REMOVE, the chunk file already unlinked: the removal is finished
  (a tombstone).
When the pending bytes equal the committed bytes, the pending version stays
pending: both outcomes hold the same data, and the chain settles the version.
A restarted target serves nothing before it is resynced (or, as its chain's last
serving replica, takes over what it holds pending), so keeping is always safe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import chunkfiles as files
from . import replication
from .records import ChunkId, ChunkRecord, UpdateKind, decode_key
from .targetdb import PENDING_REQUEST_SUFFIX, TargetDB

__all__ = ["RecoveryReport", "recover"]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    rolled_forward: tuple[ChunkId, ...] = ()
    discarded: tuple[ChunkId, ...] = ()
    kept_pending: tuple[ChunkId, ...] = ()


def _landed(rec: ChunkRecord, chunk_path: str) -> bool:
    """Did the commit of the pending version reach the chunk file?"""
    if rec.pending_kind == UpdateKind.REMOVE:
        return rec.committed and not os.path.exists(chunk_path)
    on_disk = files.file_crc32c(chunk_path)
    pending = (rec.pending_length, rec.pending_crc32c)
    committed = (rec.length, rec.crc32c) if rec.committed else None
    return on_disk == pending and on_disk != committed


def _pending_whole(rec: ChunkRecord, pending_path: str) -> bool:
    """Is the pending version's file complete (a REMOVE needs no file)?"""
    if rec.pending_kind == UpdateKind.REMOVE:
        return True
    return files.file_crc32c(pending_path) == (rec.pending_length, rec.pending_crc32c)


def recover(db: TargetDB, paths: files.ChunkPaths) -> RecoveryReport:
    rolled: list[ChunkId] = []
    discarded: list[ChunkId] = []
    kept: list[ChunkId] = []
    for key in db.pending_keys():
        rec = db.get(key)
        if rec is None or rec.pending_version is None:
            db.write(key, rec, rec)  # a stale index entry: rewriting drops it
            continue
        chunk_id = decode_key(key)
        version = rec.pending_version
        chunk_path = paths.chunk(chunk_id)
        after: ChunkRecord | None
        if _landed(rec, chunk_path):
            if rec.pending_kind == UpdateKind.REMOVE:
                after = ChunkRecord(version, rec.pending_chain_version, tombstone=True)
            else:
                after = ChunkRecord(version, rec.pending_chain_version, rec.pending_length,
                                    rec.pending_crc32c)
                files.fsync_file(chunk_path)  # what we saw may be only in the page cache
            files.fsync_dir(paths.directory(chunk_id))
            rolled.append(chunk_id)
        elif replication.recovered(rec.replica, pending_whole=_pending_whole(rec, paths.pending(chunk_id, version))
                                   ).pending_version is not None:
            files.unlink_quiet(paths.partial(chunk_id, version))
            kept.append(chunk_id)
            continue
        else:
            after = rec.without_pending()
            discarded.append(chunk_id)
        files.unlink_quiet(*paths.pending_files(chunk_id, version))
        db.write(key, rec, after, side=[("history", key + PENDING_REQUEST_SUFFIX, None)])
    return RecoveryReport(tuple(rolled), tuple(discarded), tuple(kept))
