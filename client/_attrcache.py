"""The client's attribute cache: what an Open for reading answered, per path, for a while.

`Client.read_file`, `read_range`, `read_into` and `read_ranges` look a path up with an
Open (the metaserver checks read permission and grants the read capability). This cache
keeps that answer (inode, layout, length; the capability stays in `_caps.py`) so that
repeated reads of the same files stop paying a round trip each, with close-to-open
consistency as NFS and JuiceFS give it:

- An entry is used for `timeout` seconds from when its Open was *sent* (the answer is
  at least that fresh); then the next read asks again. 0 disables the cache.
- `Client.open()` always asks the metaserver (`refresh`) and stores the answer (or
  drops the entry when the open fails), so a change another client made before that
  open is seen by it, and by reads by path after it.
- This client's own changes drop every entry they can affect before they return
  (`Change`, `SCOPES`): read-your-writes.
- Misses of one path share one Open in flight. Any change detaches the Opens in flight
  and discards their answers (they may predate it), so a read that starts after a
  change never sees an answer from before it; an older answer never replaces a newer.
- At most `max_entries` entries; the least recently used goes first. A hit is two dict
  operations and a clock read, no lock (one event loop owns the cache).

The cache never decides alone that an entry is still right: a read that finds the file
gone or refused (NotFound, PermissionDenied) or finds fewer bytes than the cached length
promises asks again (`Client._read_by_path`).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["DEFAULT_ATTR_TIMEOUT", "MAX_ENTRIES", "SCOPES", "AttrCache", "Change", "Scope", "fresh"]

DEFAULT_ATTR_TIMEOUT = 1.0  # seconds; JuiceFS's default attribute timeout, NFS's acregmin is 3
MAX_ENTRIES = 65536

V = TypeVar("V")


class Change(enum.Enum):
    """A change this client made, as far as the cache is concerned."""

    NEW_NAME = "new name"  # create, mkdir, symlink, link: a name that did not resolve now does
    FILE_CHANGED = "file changed"  # length report (Sync, Close), truncate, setattr of a file
    DIR_CHANGED = "directory changed"  # setattr of a directory: who may traverse it
    NAME_GONE = "name gone"  # remove, rmdir, rmtree, rename: names stop resolving or move


class Scope(enum.Enum):
    """Which entries a change drops."""

    PATH = "the path"
    PATH_AND_INODE = "the path and every path cached with its inode (hard links, symlinks)"
    ALL = "every entry"


# Why each: a new name can only change what that one path resolves to. A file's content
# or attributes are the inode's, seen through all its names. A name that goes away or
# moves, or a directory whose permissions change, alters every path through it,
# symlinks elsewhere included, which no prefix covers: so everything goes.
SCOPES: dict[Change, Scope] = {
    Change.NEW_NAME: Scope.PATH,
    Change.FILE_CHANGED: Scope.PATH_AND_INODE,
    Change.DIR_CHANGED: Scope.ALL,
    Change.NAME_GONE: Scope.ALL,
}


def fresh(sent_at: float, timeout: float, now: float) -> bool:
    """An answer to a request sent at `sent_at` may still be used at `now`."""
    return now - sent_at < timeout


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    inode_id: int
    sent_at: float  # when the Open that answered it was sent (monotonic)


Fetch = Callable[[], Awaitable[tuple[V, int]]]  # -> (value, inode id)


class AttrCache(Generic[V]):
    """Open answers by path; see the module docstring."""

    def __init__(self, timeout: float = DEFAULT_ATTR_TIMEOUT, *, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not timeout >= 0:  # also refuses NaN
            raise ValueError(f"attr_timeout must be 0 (off) or a positive number of seconds, not {timeout!r}")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.timeout = float(timeout)
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()  # least recently used first
        # inode id -> the cached path naming it, or a set when there are several (a set
        # for each would cost 200 bytes an entry)
        self._paths_of: dict[int, str | set[str]] = {}
        self._inflight: dict[str, asyncio.Future[tuple[V, int]]] = {}
        self._generation = 0  # bumped by every change: answers sent before it are not stored

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str) -> V | None:
        """The cached answer for path if it is fresh, else None."""
        entry = self._entries.get(path)
        if entry is None:
            return None
        if not fresh(entry.sent_at, self.timeout, self._clock()):
            self._remove(path)
            return None
        self._entries.move_to_end(path)
        return entry.value

    async def lookup(self, path: str, fetch: Fetch[V]) -> tuple[V, bool]:
        """(value, True) from the cache, or (fetch()'s value, False), sharing a fetch
        already in flight for path."""
        value = self.get(path)
        if value is not None:
            return value, True
        if not self.timeout:
            return (await fetch())[0], False
        future = self._inflight.get(path)
        if future is None:
            future = self._inflight[path] = asyncio.ensure_future(self._fetch_and_store(path, fetch))
            future.add_done_callback(lambda f: self._fetched(path, f))
        return (await asyncio.shield(future))[0], False

    async def refresh(self, path: str, fetch: Fetch[V]) -> V:
        """fetch()'s value, always asked for (an open's revalidation), and stored. If it
        fails (the file is gone or refused now), path's entry goes too."""
        try:
            return (await self._fetch_and_store(path, fetch))[0]
        except BaseException:
            self._remove(path)
            raise

    async def _fetch_and_store(self, path: str, fetch: Fetch[V]) -> tuple[V, int]:
        generation, sent_at = self._generation, self._clock()
        value, inode_id = await fetch()
        if self.timeout and generation == self._generation:
            self._store(path, value, inode_id, sent_at)
        return value, inode_id

    def _fetched(self, path: str, future: asyncio.Future[tuple[V, int]]) -> None:
        if self._inflight.get(path) is future:
            del self._inflight[path]
        if not future.cancelled():
            future.exception()  # retrieved here: every waiter may have been cancelled

    def _store(self, path: str, value: V, inode_id: int, sent_at: float) -> None:
        held = self._entries.get(path)
        if held is not None:
            if held.sent_at > sent_at:
                return  # a newer answer is already here
            self._remove(path)
        self._entries[path] = _Entry(value, inode_id, sent_at)
        named = self._paths_of.get(inode_id)
        if named is None:
            self._paths_of[inode_id] = path
        elif isinstance(named, str):
            self._paths_of[inode_id] = {named, path}
        else:
            named.add(path)
        while len(self._entries) > self.max_entries:
            self._remove(next(iter(self._entries)))

    def _remove(self, path: str) -> None:
        entry = self._entries.pop(path, None)
        if entry is None:
            return
        named = self._paths_of.get(entry.inode_id)
        if isinstance(named, set):
            named.discard(path)
            if len(named) == 1:
                self._paths_of[entry.inode_id] = named.pop()
        elif named == path:
            del self._paths_of[entry.inode_id]

    def drop(self, path: str) -> None:
        """Forget path's entry (a read found it stale); nothing else changes."""
        self._remove(path)

    def changed(self, change: Change, path: str, inode_id: int | None = None) -> None:
        """This client changed something at path (of inode `inode_id`, when known): drop
        every entry the change can affect (`SCOPES`) and detach the Opens in flight."""
        self._generation += 1
        self._inflight.clear()  # their waiters keep them; new lookups start afresh
        scope = SCOPES[change]
        if scope is Scope.ALL:
            self._entries.clear()
            self._paths_of.clear()
            return
        if scope is Scope.PATH_AND_INODE:
            cached = self._entries.get(path)
            inodes = {inode_id} if inode_id is not None else set()
            if cached is not None:
                inodes.add(cached.inode_id)  # path named another inode when it was cached
            for inode in inodes:
                named = self._paths_of.get(inode)
                for alias in [named] if isinstance(named, str) else list(named or ()):
                    self._remove(alias)
        self._remove(path)
