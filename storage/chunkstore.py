"""One storage *target*: chunk files plus a target LMDB of chunk metadata.

Each chunk has a committed version and at most one pending version (CRAQ). The
pending version is built copy-on-write in a file beside the chunk file, so the
committed bytes stay readable until commit, which is:

    fsync the pending file -> os.replace it over the chunk file -> fsync the
    directory -> one LMDB transaction: the pending version becomes the committed one

The LMDB environment (its own, under `<target>/meta`, sync=True) holds one record
per chunk keyed by 8-byte big-endian inode + 4-byte big-endian chunk index, an
index of chunks with a pending version, and running totals. Crash safety:
- prepare records the pending version *before* writing its file, so every pending
  file on disk is named by a record and recovery finds it without a directory walk;
- on open, each pending version is either rolled forward (the crash hit between
  the replace and the metadata update: the chunk file already holds exactly the
  pending length and CRC32C) or discarded (CRAQ recovers it from the chain).

Operations are synchronous and thread-safe for *different* chunks; the caller
(the service) serialises updates of one chunk. Readers never block writers: a
commit gate (see commitgate.py) lets a read pair metadata with the right file.
The rules about *which* update to apply live in versions.py; this store applies
what it is told and keeps itself consistent.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import replace as _replace

import crc32c
import lmdb

from emberfs.common.errors import (
    NoSpace,
    Busy,
    ChecksumMismatch,
    ChunkNotCommitted,
    EmberError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
)
from emberfs.common.layout import MAX_CHUNK_INDEX

from . import chunkfiles as files
from .commitgate import CommitGate
from .metastore import MetaStore
from .oserrors import translated
from .recovery import RecoveryReport, recover
from .records import (
    ChunkId,
    ChunkMeta,
    ChunkRecord,
    PendingInfo,
    TargetStats,
    UpdateKind,
    decode_key,
    encode_key,
    inode_prefix,
)
from .updateplan import Buffer, plan_update, validate_update

__all__ = ["ChunkStore"]

_BATCH = 1024  # chunk records per remove_inode transaction
_READ_ATTEMPTS = 16
_RECOVERY_GROWTHS = 4  # a full map is doubled at most this many times to finish recovery

log = logging.getLogger("emberfs.storage.chunkstore")


def _check_chunk_id(chunk_id: ChunkId) -> ChunkId:
    inode_id, chunk_index = chunk_id
    if not (0 <= inode_id < 2**64 and 0 <= chunk_index < 2**32):
        raise InvalidArgument(f"chunk id out of range: {chunk_id}")
    return ChunkId(inode_id, chunk_index)


def _meta(chunk_id: ChunkId, rec: ChunkRecord | None) -> ChunkMeta:
    if rec is None:
        return ChunkMeta(chunk_id, False, 0, None, 0, 0, 0)
    return ChunkMeta(
        chunk_id, rec.committed, rec.commit_version, rec.pending_version,
        rec.chain_version, rec.length, rec.crc32c,
    )


class ChunkStore:
    """The chunks of one target directory. Open it once per process (a lock file
    refuses a second opener) and close it when done."""

    def __init__(self, root: str | os.PathLike[str], *, map_size: int = 1 << 30) -> None:
        self.root = os.fspath(root)
        os.makedirs(self.root, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.root, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise Busy(f"target {self.root} is open in another store") from None
        try:
            with translated("open target"):
                self._db = MetaStore(os.path.join(self.root, "meta"), map_size=map_size)
                self.paths = files.ChunkPaths(self.root)
            self._gate = CommitGate()
            self.recovered: RecoveryReport = self._recover()
        except BaseException:
            self.close()
            raise

    def _recover(self) -> RecoveryReport:
        """Crash recovery; a map too full to record it (even a discard needs free pages)
        is grown: nothing else runs while the store opens, so resizing is safe here."""
        for _ in range(_RECOVERY_GROWTHS):
            try:
                with translated("recover target"):
                    return recover(self._db, self.paths)
            except NoSpace as exc:
                if not isinstance(exc.__cause__, lmdb.MapFullError):
                    raise
                log.warning("target %s: metadata map full during recovery; growing it to %d bytes",
                            self.root, self._db.grow())
        with translated("recover target"):
            return recover(self._db, self.paths)

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()  # idempotent
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ------------------------------------------------------------

    def meta(self, chunk_id: ChunkId) -> ChunkMeta:
        chunk_id = _check_chunk_id(chunk_id)
        with translated("meta"):
            return _meta(chunk_id, self._db.get(encode_key(chunk_id)))

    # -- updates -------------------------------------------------------------

    def prepare(
        self,
        chunk_id: ChunkId,
        kind: UpdateKind | int,
        offset: int,
        data: Buffer,
        length: int,
        update_version: int,
        chain_version: int,
        chunk_size: int,
        *,
        data_crc32c: int | None = None,
    ) -> PendingInfo:
        """Store `update_version` as the chunk's pending version (replacing any other
        pending version); the committed version stays readable until `commit`.

        WRITE puts `data` at `offset` (zero-filling a gap), TRUNCATE sets the length
        to `length`, REPLACE makes `data` the whole chunk, REMOVE deletes the chunk at
        commit. `data_crc32c`, when given, must match `data`. Nothing past
        `chunk_size` is accepted. Any `update_version` >= 1 is stored: whether to
        apply an update at all is the caller's decision (versions.decide_update).
        """
        chunk_id = _check_chunk_id(chunk_id)
        kind = validate_update(kind, offset, data, length, update_version, chain_version,
                               chunk_size, data_crc32c)
        key = encode_key(chunk_id)
        chunk_path = self.paths.chunk(chunk_id)
        with translated("prepare"):
            before = self._db.get(key)
            committed = before is not None and before.committed
            old_len, old_crc = (before.length, before.crc32c) if before and committed else (0, 0)

            def read_committed(n: int) -> bytes:
                fd = os.open(chunk_path, os.O_RDONLY)
                try:
                    return files.pread_exact(fd, n, 0)
                finally:
                    os.close(fd)

            plan = plan_update(kind, offset, data, length, old_len, old_crc, read_committed)
            if before is not None and before.pending_version not in (None, update_version):
                old = before.pending_version
                files.unlink_quiet(*self.paths.pending_files(chunk_id, old))
            base = before if before is not None else ChunkRecord()
            after = _replace(
                base, pending_version=update_version, pending_kind=kind,
                pending_length=plan.length, pending_crc32c=plan.crc32c,
                pending_chain_version=chain_version,
            )
            self._db.write(key, before, after)
        pending_path = self.paths.pending(chunk_id, update_version)
        try:
            with translated("prepare"):
                if kind == UpdateKind.REMOVE:
                    files.unlink_quiet(pending_path)
                else:
                    self.paths.ensure_directory(chunk_id)
                    files.write_pending_file(
                        self.paths.partial(chunk_id, update_version), pending_path,
                        chunk_path if committed else None, plan,
                    )
        except EmberError:
            # The committed version is untouched; drop the half-built pending one.
            files.unlink_quiet(*self.paths.pending_files(chunk_id, update_version))
            with translated("prepare (undo)"):
                self._db.write(key, after, after.without_pending())
            raise
        return PendingInfo(chunk_id, kind, update_version, base.commit_version, chain_version,
                           plan.length, plan.crc32c)

    def commit(self, chunk_id: ChunkId, update_version: int) -> ChunkMeta:
        """Make pending `update_version` the committed version. Committing a version
        that is already committed (a retry) returns the current state. A committed
        REMOVE returns exists=False with commit_version `update_version`; the chunk's
        record is gone, so `meta` reports version 0 afterwards."""
        chunk_id = _check_chunk_id(chunk_id)
        key = encode_key(chunk_id)
        chunk_path = self.paths.chunk(chunk_id)
        with translated("commit"):
            before = self._db.get(key)
            if before is None or before.pending_version != update_version:
                if before and before.committed and before.commit_version >= update_version:
                    return _meta(chunk_id, before)
                raise FailedPrecondition(f"chunk {chunk_id}: no pending version {update_version}")
            if before.pending_kind == UpdateKind.REMOVE:
                def unlink() -> None:
                    files.unlink_quiet(chunk_path)
                    if before.committed:
                        files.fsync_dir(self.paths.directory(chunk_id))

                with self._gate.committing([key]):
                    self._db.write(key, before, None, then=unlink)  # the file goes only if the record change fits
                return ChunkMeta(chunk_id, False, update_version, None,
                                 before.pending_chain_version, 0, 0)
            pending_path = self.paths.pending(chunk_id, update_version)
            files.fsync_file(pending_path)
            after = ChunkRecord(update_version, before.pending_chain_version,
                                before.pending_length, before.pending_crc32c)
            def swap() -> None:
                os.replace(pending_path, chunk_path)
                files.fsync_dir(self.paths.directory(chunk_id))

            with self._gate.committing([key]):
                # The rename runs inside the record's transaction, after its puts: a full
                # map refuses the commit before the committed file is touched.
                self._db.write(key, before, after, then=swap)
            return _meta(chunk_id, after)

    def abort(self, chunk_id: ChunkId, update_version: int) -> None:
        """Drop pending `update_version` (no-op if it is not the pending version)."""
        chunk_id = _check_chunk_id(chunk_id)
        key = encode_key(chunk_id)
        with translated("abort"):
            before = self._db.get(key)
            if before is None or before.pending_version != update_version:
                return
            files.unlink_quiet(*self.paths.pending_files(chunk_id, update_version))
            self._db.write(key, before, before.without_pending())

    # -- reads ---------------------------------------------------------------

    def _open(self, chunk_id: ChunkId, version: int | None) -> tuple[int | None, ChunkMeta]:
        """An open descriptor on the bytes of `version` (default: the committed one)
        and the metadata that matches them; None when the chunk has no bytes."""
        key = encode_key(chunk_id)
        for _ in range(_READ_ATTEMPTS):
            token = self._gate.enter(key)
            rec = self._db.get(key)
            meta = _meta(chunk_id, rec)
            if version is None or (meta.exists and version == meta.commit_version) or (
                not meta.exists and version == 0
            ):
                if not meta.exists:
                    return None, meta
                path = self.paths.chunk(chunk_id)
            elif rec is not None and version == rec.pending_version:
                if rec.pending_kind == UpdateKind.REMOVE:
                    chain_version = rec.pending_chain_version
                    return None, ChunkMeta(chunk_id, False, version, None, chain_version, 0, 0)
                path = self.paths.pending(chunk_id, version)
                meta = ChunkMeta(chunk_id, True, version, None, rec.pending_chain_version,
                                 rec.pending_length, rec.pending_crc32c)
            else:
                raise ChunkNotCommitted(
                    f"chunk {chunk_id}: version {version} is neither committed nor pending here"
                )
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                if version is None and self._gate.unchanged(token):
                    raise Internal(f"chunk {chunk_id}: committed file is missing") from None
                continue  # a commit moved it, or the pending file is not built yet
            if self._gate.unchanged(token):
                return fd, meta
            os.close(fd)
        raise ChunkNotCommitted(f"chunk {chunk_id} kept changing during the read")

    def open_committed(self, chunk_id: ChunkId) -> tuple[int | None, ChunkMeta]:
        """An open descriptor on the committed chunk file (the caller closes it) and its
        metadata; None when the chunk has no bytes."""
        chunk_id = _check_chunk_id(chunk_id)
        with translated("read"):
            return self._open(chunk_id, None)

    def read(self, chunk_id: ChunkId, offset: int, length: int, *,
             version: int | None = None, cached_only: bool = False) -> tuple[bytes, ChunkMeta]:
        """Bytes [offset, offset+length) of the committed version (or of `version`,
        committed or pending), short at the chunk's end. A missing chunk gives
        (b"", meta with exists False). A whole-chunk read is checked against the
        stored CRC32C (ChecksumMismatch: the chunk file is corrupt).
        cached_only: raise files.WouldBlock rather than wait for the disk."""
        chunk_id = _check_chunk_id(chunk_id)
        if offset < 0 or length < 0:
            raise InvalidArgument(f"bad read range: offset {offset}, length {length}")
        with translated("read"):
            fd, meta = self._open(chunk_id, version)
            if fd is None:
                return b"", meta
            try:
                n = max(0, min(length, meta.length - offset))
                if not n:
                    data = b""
                elif cached_only:
                    data = files.pread_cached(fd, n, offset)
                else:
                    data = files.pread_exact(fd, n, offset)
            finally:
                os.close(fd)
        if n and n == meta.length and crc32c.crc32c(data) != meta.crc32c:
            raise ChecksumMismatch(f"chunk {chunk_id} v{meta.commit_version} fails its CRC32C")
        return data, meta

    def read_into(self, chunk_id: ChunkId, offset: int, buffer: Buffer, *,
                  version: int | None = None) -> tuple[int, ChunkMeta]:
        """Like `read`, into a caller's (pooled) buffer; returns the byte count."""
        chunk_id = _check_chunk_id(chunk_id)
        view = memoryview(buffer).cast("B")
        if offset < 0:
            raise InvalidArgument(f"bad read offset {offset}")
        with translated("read"):
            fd, meta = self._open(chunk_id, version)
            if fd is None:
                return 0, meta
            try:
                n = max(0, min(len(view), meta.length - offset))
                done = 0
                while done < n:
                    got = os.preadv(fd, [view[done:n]], offset + done)
                    if not got:
                        raise Internal(f"chunk {chunk_id}: file shorter than its metadata")
                    done += got
            finally:
                os.close(fd)
        return n, meta

    def verify(self, chunk_id: ChunkId) -> bool:
        """True when the committed file matches its stored length and CRC32C (or the
        chunk does not exist)."""
        chunk_id = _check_chunk_id(chunk_id)
        with translated("verify"):
            fd, meta = self._open(chunk_id, None)
            if fd is None:
                return True
            try:
                crc, offset = 0, 0
                while block := os.pread(fd, 1 << 20, offset):
                    crc, offset = crc32c.crc32c(block, crc), offset + len(block)
            finally:
                os.close(fd)
        return (offset, crc) == (meta.length, meta.crc32c)

    # -- listing, GC, statistics ---------------------------------------------

    def list_chunks(self, inode_id: int | None = None, *,
                    include_pending: bool = False) -> Iterator[ChunkMeta]:
        """Chunks with committed bytes (and, if asked, pending-only ones), in
        (inode, index) order: for resync dumps and GC."""
        prefix = b"" if inode_id is None else inode_prefix(inode_id)
        with translated("list"):
            for key, rec in self._db.scan(prefix):
                if rec.committed or include_pending:
                    yield _meta(decode_key(key), rec)

    def last_chunk(self, inode_id: int) -> ChunkMeta | None:
        """The committed chunk of `inode_id` with the highest index (file length
        recovery), or None."""
        with translated("last chunk"):
            found = self._db.last_committed(
                inode_prefix(inode_id), encode_key(ChunkId(inode_id, MAX_CHUNK_INDEX))
            )
        return _meta(decode_key(found[0]), found[1]) if found else None

    def remove_inode(self, inode_id: int) -> int:
        """Remove every chunk of `inode_id` (GC); returns how many committed chunks
        went. Files go before records: a crash in between leaves records whose
        removal the collector retries, never unreferenced files."""
        removed = 0
        with translated("remove inode"):
            while True:
                batch = list(itertools.islice(self._db.scan(inode_prefix(inode_id)), _BATCH))
                if not batch:
                    return removed
                with self._gate.committing(k for k, _ in batch):
                    dirs = set()
                    for key, rec in batch:
                        chunk_id = decode_key(key)
                        files.unlink_quiet(self.paths.chunk(chunk_id))
                        if (version := rec.pending_version) is not None:
                            files.unlink_quiet(*self.paths.pending_files(chunk_id, version))
                        dirs.add(self.paths.directory(chunk_id))
                    for path in dirs:
                        if os.path.isdir(path):
                            files.fsync_dir(path)
                    self._db.write_many((key, rec, None) for key, rec in batch)
                removed += sum(1 for _, rec in batch if rec.committed)

    def stats(self) -> TargetStats:
        with translated("stats"):
            chunks, size, pending = self._db.totals()
            fs = os.statvfs(self.root)
        capacity, free = fs.f_frsize * fs.f_blocks, fs.f_frsize * fs.f_bavail
        return TargetStats(chunks, size, pending, capacity, free)
