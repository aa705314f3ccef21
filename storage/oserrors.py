"""The storage layer's one boundary for foreign errors (OSError, LMDB).

Inside it, code raises or lets through EmberError subclasses unchanged; anything
else becomes one of (`disk_error_kind` is the pure rule, table-tested):

    error                                    becomes        the target
    ENOSPC, EDQUOT, a full LMDB map, LMDB    NoSpace        keeps serving
      meeting a full disk (lmdb.DiskError, or
      its "Input/output error" on a disk with
      under FULL_BYTES free: LMDB reports a
      short page write, which is what a full
      disk gives it, as EIO)
    ENOENT                                   Internal       keeps serving (a race or a
                                                            bug, not a failing disk)
    any other OSError (EIO, EROFS, EACCES,   DiskFailure    is marked failed: it reports
      ENOTDIR, ...)                                         LOCAL_OFFLINE and the manager
                                                            takes it out of its chain
    another LMDB error                       Internal       keeps serving

DiskFailure travels as Unavailable (retryable): the client's retry lands on the
chain the manager rebuilds without the failed target.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

import lmdb

from emberfs.common.errors import EmberError, Internal, NoSpace, Unavailable

__all__ = ["FULL_BYTES", "DiskErrorKind", "DiskFailure", "disk_error_kind", "lmdb_error_kind", "translated"]

FULL_BYTES = 1 << 20  # a file system with less free space than this counts as full


class DiskFailure(Unavailable):
    """The target's disk refused an operation: the target must stop serving. Sent
    on the wire as Unavailable (it keeps that class's code)."""


class DiskErrorKind(Enum):
    NO_SPACE = "no_space"
    INTERNAL = "internal"
    FAILED = "failed"


def disk_error_kind(error_number: int | None) -> DiskErrorKind:
    if error_number in (errno.ENOSPC, errno.EDQUOT):
        return DiskErrorKind.NO_SPACE
    if error_number in (errno.ENOENT, None):
        return DiskErrorKind.INTERNAL
    return DiskErrorKind.FAILED


def lmdb_error_kind(message: str, free_bytes: int | None) -> DiskErrorKind:
    """An LMDB error's kind: NO_SPACE for an I/O error on a full disk (`free_bytes`: what
    the target's file system has left, None when unknown), else INTERNAL."""
    if "Input/output error" in message and free_bytes is not None and free_bytes < FULL_BYTES:
        return DiskErrorKind.NO_SPACE
    return DiskErrorKind.INTERNAL


def _free_bytes(directory: str | None) -> int | None:
    if directory is None:
        return None
    try:
        stats = os.statvfs(directory)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


@contextmanager
def translated(what: str, directory: str | None = None) -> Iterator[None]:
    """Translate foreign errors (module docstring); `directory`: the target's, to tell a
    full disk behind an LMDB I/O error."""
    try:
        yield
    except EmberError:
        raise
    except lmdb.MapFullError as exc:
        raise NoSpace(f"{what}: target metadata map is full") from exc
    except lmdb.DiskError as exc:  # py-lmdb's class for ENOSPC from a commit's page writes
        raise NoSpace(f"{what}: no space left on device for the target metadata") from exc
    except lmdb.Error as exc:
        if lmdb_error_kind(str(exc), _free_bytes(directory)) == DiskErrorKind.NO_SPACE:
            raise NoSpace(f"{what}: no space left on device for the target metadata ({exc})") from exc
        raise Internal(f"{what}: metadata store failed: {exc}") from exc
    except OSError as exc:
        kind = disk_error_kind(exc.errno)
        if kind == DiskErrorKind.NO_SPACE:
            raise NoSpace(f"{what}: {exc.strerror}") from exc
        if kind == DiskErrorKind.FAILED:
            raise DiskFailure(f"{what}: disk error: {exc}") from exc
        raise Internal(f"{what}: {exc}") from exc
