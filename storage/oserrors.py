"""The storage layer's one boundary for foreign errors (OSError, LMDB).

Inside it, code raises or lets through EmberError subclasses unchanged; anything
else becomes NoSpace (a full disk or a full metadata map) or Internal, with the
operation named, so the service edge only ever sees the shared error tree.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import lmdb

from emberfs.common.errors import EmberError, Internal, NoSpace

__all__ = ["translated"]


@contextmanager
def translated(what: str) -> Iterator[None]:
    try:
        yield
    except EmberError:
        raise
    except lmdb.MapFullError as exc:
        raise NoSpace(f"{what}: target metadata map is full") from exc
    except lmdb.Error as exc:
        raise Internal(f"{what}: metadata store failed: {exc}") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"{what}: {exc.strerror}") from exc
        raise Internal(f"{what}: {exc}") from exc
