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
  pending length and CRC32C), kept pending (its file is whole) or discarded
  (recovery.py).

Operations are synchronous and thread-safe for *different* chunks; the caller
(the service) serialises updates of one chunk. Readers never block writers: a
commit gate (see commitgate.py) lets a read pair metadata with the right file.
The rules about *which* versions may be stored and committed live in
replication.py; the store refuses what they refuse (a pending version at or below
the committed one, a commit of a version that is not pending) and keeps itself
consistent. A committed REMOVE leaves a tombstone (the version, no bytes); a file
whose chunks GC removed is marked gone, and nothing re-creates its chunks.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace as _replace

import crc32c
import lmdb

from emberfs.common.errors import (
    ChunkGone,
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
from . import replication
from .targetdb import PENDING_REQUEST_SUFFIX, InodeGone, TargetDB
from .updateplan import Buffer, plan_update, validate_update

__all__ = ["ChunkStore"]

_BATCH = 1024  # chunk records per remove_inode transaction
_READ_ATTEMPTS = 16
_RECOVERY_GROWTHS = 4  # a full map is doubled at most this many times to finish recovery
_ADVISE_WINDOW = 64  # read_many: chunk files open at once per call (and ranges advised ahead)

log = logging.getLogger("emberfs.storage.chunkstore")


def _check_chunk_id(chunk_id: ChunkId) -> ChunkId:
    inode_id, chunk_index = chunk_id
    if not (0 <= inode_id < 2**64 and 0 <= chunk_index < 2**32):
        raise InvalidArgument(f"chunk id out of range: {chunk_id}")
    return ChunkId(inode_id, chunk_index)


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise InvalidArgument(f"bad read range: offset {offset}, length {length}")


def _span(meta: ChunkMeta, offset: int, length: int) -> int:
    """How many bytes a read of [offset, offset+length) gets: short at the chunk's end."""
    return max(0, min(length, meta.length - offset))


def _read_opened(fd: int, meta: ChunkMeta, offset: int, length: int, *, cached_only: bool = False) -> bytes:
    """The bytes of a read from the descriptor `_open` paired with `meta`; a whole-chunk
    read is checked against the stored CRC32C."""
    n = _span(meta, offset, length)
    if not n:
        return b""
    data = files.pread_cached(fd, n, offset) if cached_only else files.pread_exact(fd, n, offset)
    if n == meta.length and crc32c.crc32c(data) != meta.crc32c:
        raise ChecksumMismatch(f"chunk {meta.chunk_id} v{meta.commit_version} fails its CRC32C")
    return data


_HISTORY_LIMIT = 16  # recent client requests remembered per chunk (retry recognition)
_HISTORY_ENTRY = 24  # 16-byte request key + 8-byte version
_PENDING_SUFFIX = PENDING_REQUEST_SUFFIX


def _meta(chunk_id: ChunkId, rec: ChunkRecord | None) -> ChunkMeta:
    if rec is None:
        return ChunkMeta(chunk_id, False, 0, None, 0, 0, 0)
    committed = rec.committed
    return ChunkMeta(
        chunk_id, committed, rec.commit_version, rec.pending_version,
        rec.chain_version, rec.length if committed else 0, rec.crc32c if committed else 0,
        rec.pending_digest,
    )


def request_key(client_id: str, request_id: int) -> bytes:
    """16 bytes naming one client request (what a chunk's history remembers)."""
    return hashlib.blake2b(client_id.encode(), digest_size=8).digest() + request_id.to_bytes(8, "big")


def _decode_history(raw: bytes | None) -> tuple[tuple[bytes, int], ...]:
    if not raw:
        return ()
    return tuple((raw[i:i + 16], int.from_bytes(raw[i + 16:i + 24], "big"))
                 for i in range(0, len(raw) - len(raw) % _HISTORY_ENTRY, _HISTORY_ENTRY))


def _encode_history(history: tuple[tuple[bytes, int], ...]) -> bytes:
    return b"".join(key + version.to_bytes(8, "big") for key, version in history)


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
                self._db = TargetDB(os.path.join(self.root, "meta"), map_size=map_size)
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
                with translated("recover target", self.root):
                    return recover(self._db, self.paths)
            except NoSpace as exc:
                if not isinstance(exc.__cause__, lmdb.MapFullError):
                    raise
                log.warning("target %s: metadata map full during recovery; growing it to %d bytes",
                            self.root, self._db.grow())
        with translated("recover target", self.root):
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
        with translated("meta", self.root):
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
        sync: bool = False,
        request: bytes = b"",
    ) -> PendingInfo:
        """Store `update_version` as the chunk's pending version (replacing any other
        pending version); the committed version stays readable until `commit`.

        WRITE puts `data` at `offset` (zero-filling a gap), TRUNCATE sets the length
        to `length`, REPLACE makes `data` the whole chunk, REMOVE leaves a tombstone at
        commit. `data_crc32c`, when given, must match `data`. Nothing past
        `chunk_size` is accepted. The version must be above the committed one unless
        `sync` (a resync target adopts its predecessor's versions; replication.py);
        whether to apply an update at all is the caller's decision (decide_update).
        `request`: the client request behind the update (request_id bytes + client_id),
        remembered in the chunk's history at commit.
        """
        chunk_id = _check_chunk_id(chunk_id)
        kind = validate_update(kind, offset, data, length, update_version, chain_version,
                               chunk_size, data_crc32c)
        key = encode_key(chunk_id)
        chunk_path = self.paths.chunk(chunk_id)
        with translated("prepare", self.root):
            before = self._db.get(key)
            if before is not None and not replication.may_prepare(before.replica, update_version, sync=sync):
                raise FailedPrecondition(
                    f"chunk {tuple(chunk_id)}: pending version {update_version} is not above the committed "
                    f"version {before.commit_version}: versions only grow")
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
            try:
                self._db.write(key, before, after, unless_gone=inode_prefix(chunk_id.inode_id),
                               side=[("history", key + _PENDING_SUFFIX, request or None)])
            except InodeGone:
                raise ChunkGone(f"chunk {tuple(chunk_id)}: its file was deleted and its chunks collected "
                               "here; nothing is written") from None
        pending_path = self.paths.pending(chunk_id, update_version)
        try:
            with translated("prepare", self.root):
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
            with translated("prepare (undo)", self.root):
                self._db.write(key, after, after.without_pending(),
                               side=[("history", key + _PENDING_SUFFIX, None)])
            raise
        return PendingInfo(chunk_id, kind, update_version, base.commit_version, chain_version,
                           plan.length, plan.crc32c)

    def commit(self, chunk_id: ChunkId, update_version: int) -> ChunkMeta:
        """Make pending `update_version` the committed version. Committing the version
        that is already committed (a retry) returns the current state; any other
        version is refused (replication.committed). A committed REMOVE leaves a
        tombstone: exists=False at commit_version `update_version`."""
        chunk_id = _check_chunk_id(chunk_id)
        key = encode_key(chunk_id)
        chunk_path = self.paths.chunk(chunk_id)
        with translated("commit", self.root):
            before = self._db.get(key)
            try:
                replication.committed(before.replica if before else replication.Replica(), update_version)
            except ValueError as exc:
                raise FailedPrecondition(f"chunk {tuple(chunk_id)}: {exc}") from None
            assert before is not None
            if before.pending_version != update_version:
                return _meta(chunk_id, before)  # committed already: a retry
            side = self._history_after_commit(key, update_version)
            if before.pending_kind == UpdateKind.REMOVE:
                def unlink() -> None:
                    files.unlink_quiet(chunk_path)
                    if before.committed:
                        files.fsync_dir(self.paths.directory(chunk_id))

                tomb = ChunkRecord(update_version, before.pending_chain_version, tombstone=True)
                with self._gate.committing([key]):
                    # The file goes only if the record change fits.
                    self._db.write(key, before, tomb, then=unlink, side=side)
                return _meta(chunk_id, tomb)
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
                self._db.write(key, before, after, then=swap, side=side)
            return _meta(chunk_id, after)

    def _history_after_commit(self, key: bytes, version: int) -> list[tuple[str, bytes, bytes | None]]:
        """The history writes of a commit: the pending version's request joins the list."""
        request = self._db.get_side("history", key + _PENDING_SUFFIX)
        if not request:
            return []
        client_id = request[8:].decode(errors="replace")
        entry = request_key(client_id, int.from_bytes(request[:8], "big"))
        history = _decode_history(self._db.get_side("history", key))
        history = replication.remembered(history, entry, version, _HISTORY_LIMIT)
        return [("history", key, _encode_history(history)), ("history", key + _PENDING_SUFFIX, None)]

    def applied(self, chunk_id: ChunkId, client_id: str, request_id: int) -> int | None:
        """The committed version a client request produced here, if remembered."""
        key = encode_key(_check_chunk_id(chunk_id))
        with translated("history", self.root):
            history = _decode_history(self._db.get_side("history", key))
        wanted = request_key(client_id, request_id)
        return next((version for entry, version in history if entry == wanted), None)

    def pending_request(self, chunk_id: ChunkId) -> bytes:
        """The request behind the pending version (b"" when none is known)."""
        with translated("history", self.root):
            return self._db.get_side("history", encode_key(_check_chunk_id(chunk_id)) + _PENDING_SUFFIX) or b""

    def purge(self, chunk_id: ChunkId) -> None:
        """Drop the chunk entirely: bytes, pending version, record, history (a resync
        from a predecessor that has no record of it; GC)."""
        chunk_id = _check_chunk_id(chunk_id)
        key = encode_key(chunk_id)
        with translated("purge", self.root):
            before = self._db.get(key)
            if before is None:
                return
            with self._gate.committing([key]):
                files.unlink_quiet(self.paths.chunk(chunk_id))
                if (version := before.pending_version) is not None:
                    files.unlink_quiet(*self.paths.pending_files(chunk_id, version))
                directory = self.paths.directory(chunk_id)
                if os.path.isdir(directory):
                    files.fsync_dir(directory)
                self._db.write(key, before, None, side=[("history", key, None),
                                                        ("history", key + _PENDING_SUFFIX, None)])

    def abort(self, chunk_id: ChunkId, update_version: int) -> None:
        """Drop pending `update_version` (no-op if it is not the pending version)."""
        chunk_id = _check_chunk_id(chunk_id)
        key = encode_key(chunk_id)
        with translated("abort", self.root):
            before = self._db.get(key)
            if before is None or before.pending_version != update_version:
                return
            files.unlink_quiet(*self.paths.pending_files(chunk_id, update_version))
            self._db.write(key, before, before.without_pending(),
                           side=[("history", key + _PENDING_SUFFIX, None)])

    # -- reads ---------------------------------------------------------------

    def _open(self, chunk_id: ChunkId, version: int | None, *,
              wait: bool = True) -> tuple[int | None, ChunkMeta]:
        """An open descriptor on the bytes of `version` (default: the committed one)
        and the metadata that matches them; None when the chunk has no bytes.
        wait=False: raise WouldBlock instead of waiting for a commit in progress
        (a read on the event loop must never wait on the disk)."""
        key = encode_key(chunk_id)
        for _ in range(_READ_ATTEMPTS):
            token = self._gate.enter(key, wait=wait)
            if token is None:
                raise files.WouldBlock()
            rec = self._db.get(key)
            meta = _meta(chunk_id, rec)
            if version is None or version == meta.commit_version:
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
        _check_range(offset, length)
        with translated("read"):
            fd, meta = self._open(chunk_id, version, wait=not cached_only)
            if fd is None:
                return b"", meta
            try:
                return _read_opened(fd, meta, offset, length, cached_only=cached_only), meta
            finally:
                os.close(fd)

    def read_many(self, reads: Sequence[tuple[ChunkId, int, int]]) -> list[tuple[bytes, ChunkMeta] | EmberError]:
        """`read` of the committed version for many small reads in one call (a batched
        read's pieces, in one I/O-pool job), each read's failure its own result. Per
        window of reads, every chunk file is opened and its record looked up once, the
        kernel is told of every range first (posix_fadvise WILLNEED: the disk works on
        them all at once instead of one pread after another), then they are read."""
        results: list[tuple[bytes, ChunkMeta] | EmberError] = []
        for start in range(0, len(reads), _ADVISE_WINDOW):
            results += self._read_window(reads[start:start + _ADVISE_WINDOW])
        return results

    def _read_window(self, reads: Sequence[tuple[ChunkId, int, int]]) -> list[tuple[bytes, ChunkMeta] | EmberError]:
        opened: list[tuple[int | None, ChunkMeta, int, int] | EmberError] = []
        try:
            for chunk_id, offset, length in reads:
                try:
                    chunk_id = _check_chunk_id(chunk_id)
                    _check_range(offset, length)
                    with translated("read"):
                        fd, meta = self._open(chunk_id, None)
                except EmberError as exc:
                    opened.append(exc)
                    continue
                opened.append((fd, meta, offset, length))
                if fd is not None and (n := _span(meta, offset, length)):
                    files.advise_willneed(fd, offset, n)
            results: list[tuple[bytes, ChunkMeta] | EmberError] = []
            for entry in opened:
                if isinstance(entry, EmberError):
                    results.append(entry)
                    continue
                fd, meta, offset, length = entry
                try:
                    with translated("read"):
                        results.append((b"" if fd is None else _read_opened(fd, meta, offset, length), meta))
                except EmberError as exc:
                    results.append(exc)
            return results
        finally:
            for entry in opened:
                if not isinstance(entry, EmberError) and entry[0] is not None:
                    os.close(entry[0])

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

    def list_chunks(self, inode_id: int | None = None, *, include_pending: bool = False,
                    tombstones: bool = False) -> Iterator[ChunkMeta]:
        """Chunks with committed bytes (and, if asked, tombstones and pending-only
        ones), in (inode, index) order: for resync dumps and GC."""
        prefix = b"" if inode_id is None else inode_prefix(inode_id)
        with translated("list"):
            for key, rec in self._db.scan(prefix):
                if rec.committed or include_pending or (tombstones and rec.commit_version):
                    yield _meta(decode_key(key), rec)

    def pending_chunks(self) -> list[ChunkId]:
        """Chunks that hold a pending version."""
        with translated("list"):
            return [decode_key(key) for key in self._db.pending_keys()]

    def mark_gone(self, inode_id: int) -> None:
        """Record that `inode_id`'s chunks are being collected here: from now on every
        prepare of one of them is refused (in the same LMDB transaction as its check)."""
        with translated("mark gone", self.root):
            self._db.write_many((), side=[("gone", inode_prefix(inode_id), b"")])

    def is_gone(self, inode_id: int) -> bool:
        with translated("gone"):
            return self._db.get_side("gone", inode_prefix(inode_id)) is not None

    def last_chunk(self, inode_id: int) -> ChunkMeta | None:
        """The committed chunk of `inode_id` with the highest index (file length
        recovery), or None."""
        with translated("last chunk"):
            found = self._db.last_committed(
                inode_prefix(inode_id), encode_key(ChunkId(inode_id, MAX_CHUNK_INDEX))
            )
        return _meta(decode_key(found[0]), found[1]) if found else None

    def remove_inode(self, inode_id: int) -> int:
        """Mark `inode_id` gone and remove every chunk of it (GC); returns how many
        committed chunks went. Files go before records: a crash in between leaves
        records whose removal the collector retries, never unreferenced files. The
        caller holds the chunk locks (craq.py) or knows no update runs."""
        self.mark_gone(inode_id)
        removed = 0
        with translated("remove inode", self.root):
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
                    side = [("history", k + suffix, None) for k, _ in batch for suffix in (b"", _PENDING_SUFFIX)]
                    self._db.write_many(((key, rec, None) for key, rec in batch), side=side)
                removed += sum(1 for _, rec in batch if rec.committed)

    def stats(self) -> TargetStats:
        with translated("stats"):
            chunks, size, pending = self._db.totals()
            fs = os.statvfs(self.root)
        capacity, free = fs.f_frsize * fs.f_blocks, fs.f_frsize * fs.f_bavail
        return TargetStats(chunks, size, pending, capacity, free)
