"""A seqlock-style gate that keeps reads of committed chunks consistent with commits.

A reader looks up a chunk's metadata and then opens its file; a commit replaces the
file and then updates the metadata. Without coordination a reader could pair the
old metadata with the new file. Commits mark their stripe active for the
replace-then-update window and bump a generation; a reader waits until its stripe
is quiet, notes the generation, does its lookup and open, and starts over if the
generation moved. Commits never wait for readers, and the file descriptor a reader
holds keeps the bytes of the version it opened after a later replace.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import crc32c

__all__ = ["CommitGate"]


class CommitGate:
    def __init__(self, stripes: int = 1024) -> None:
        self._stripes = stripes
        self._conds = [threading.Condition(threading.Lock()) for _ in range(stripes)]
        self._active = [0] * stripes
        self._generation = [0] * stripes

    def _stripe(self, key: bytes) -> int:
        return crc32c.crc32c(key) % self._stripes

    @contextmanager
    def committing(self, keys: Iterable[bytes]) -> Iterator[None]:
        """Mark the keys' stripes as changing for the duration of the block."""
        stripes = sorted({self._stripe(k) for k in keys})
        for s in stripes:
            with self._conds[s]:
                self._active[s] += 1
                self._generation[s] += 1
        try:
            yield
        finally:
            for s in stripes:
                with self._conds[s]:
                    self._active[s] -= 1
                    self._generation[s] += 1
                    if not self._active[s]:
                        self._conds[s].notify_all()

    def enter(self, key: bytes, *, wait: bool = True) -> tuple[int, int] | None:
        """Wait until no commit touches the key's stripe; return a snapshot token.
        wait=False: None at once when a commit is active (a caller on the event loop
        must not wait for a commit's fsyncs)."""
        s = self._stripe(key)
        with self._conds[s]:
            while self._active[s]:
                if not wait:
                    return None
                self._conds[s].wait()
            return s, self._generation[s]

    def unchanged(self, token: tuple[int, int]) -> bool:
        """True when no commit started or finished on the stripe since `enter`."""
        s, generation = token
        with self._conds[s]:
            return self._generation[s] == generation
