"""The client's attribute cache (client/_attrcache.py): expiry, the invalidation rules,
LRU bounds and shared Opens in flight, with a fake clock and a counting fetch."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import pytest

from emberfs.client._attrcache import SCOPES, AttrCache, Change, Scope, fresh


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """fetch(path) for the cache: answers (path's value, path's inode), counts calls;
    `gate` holds every fetch until set (to keep Opens in flight)."""

    def __init__(self, inodes: dict[str, int]) -> None:
        self.inodes = inodes
        self.calls: list[str] = []
        self.version = 0
        self.gate = asyncio.Event()
        self.gate.set()

    def __call__(self, path: str) -> Callable[[], Awaitable[tuple[str, int]]]:
        async def fetch() -> tuple[str, int]:
            self.calls.append(path)
            version = self.version
            await self.gate.wait()
            return f"{path}@{version}", self.inodes[path]

        return fetch


async def settle() -> None:
    """Let the tasks started so far run up to where they wait (a lookup, then its Open)."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- expiry ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sent_at", "timeout", "now", "usable"),
    [
        (10.0, 1.0, 10.0, True),  # just answered
        (10.0, 1.0, 10.999, True),
        (10.0, 1.0, 11.0, False),  # exactly the timeout: asked again
        (10.0, 1.0, 50.0, False),
        (10.0, 0.0, 10.0, False),  # 0: never reused
        (10.0, 3.0, 12.5, True),
    ],
)
def test_fresh(sent_at: float, timeout: float, now: float, usable: bool) -> None:
    assert fresh(sent_at, timeout, now) is usable


def test_entry_lives_timeout_from_when_its_open_was_sent() -> None:
    clock = Clock()
    cache: AttrCache[str] = AttrCache(1.0, clock=clock)
    fetcher = Fetcher({"/a": 1})

    async def slow_fetch() -> tuple[str, int]:
        clock.now += 0.4  # the Open took 0.4 s: the entry is already 0.4 s old
        return "/a@slow", 1

    async def run() -> None:
        assert await cache.lookup("/a", slow_fetch) == ("/a@slow", False)
        clock.now += 0.5
        assert await cache.lookup("/a", fetcher("/a")) == ("/a@slow", True)
        clock.now += 0.1  # 1.0 s after the Open was sent
        assert await cache.lookup("/a", fetcher("/a")) == ("/a@0", False)
        assert fetcher.calls == ["/a"]

    asyncio.run(run())


def test_timeout_zero_asks_every_time_and_keeps_nothing() -> None:
    cache: AttrCache[str] = AttrCache(0.0, clock=Clock())
    fetcher = Fetcher({"/a": 1})

    async def run() -> None:
        for _ in range(3):
            assert (await cache.lookup("/a", fetcher("/a")))[1] is False
        await cache.refresh("/a", fetcher("/a"))
        assert len(cache) == 0

    asyncio.run(run())
    assert fetcher.calls == ["/a"] * 4


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_bad_timeout_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="attr_timeout"):
        AttrCache(bad)


# -- invalidation rules -----------------------------------------------------------------

def test_every_change_has_a_scope() -> None:
    assert set(SCOPES) == set(Change)


# Cache contents for every case: /f and its hard link /h and symlink /s (all inode 7),
# /g (inode 8), /d/x (inode 9) under a directory /d.
_INODES = {"/f": 7, "/h": 7, "/s": 7, "/g": 8, "/d/x": 9}


@pytest.mark.parametrize(
    ("change", "path", "inode_id", "left"),
    [
        # a new name resolves only itself
        (Change.NEW_NAME, "/n", None, {"/f", "/h", "/s", "/g", "/d/x"}),
        (Change.NEW_NAME, "/g", None, {"/f", "/h", "/s", "/d/x"}),  # /g was replaced meanwhile
        # a file's change reaches every name of its inode
        (Change.FILE_CHANGED, "/f", 7, {"/g", "/d/x"}),
        (Change.FILE_CHANGED, "/h", None, {"/g", "/d/x"}),  # inode unknown: the cached one's
        (Change.FILE_CHANGED, "/new", 7, {"/g", "/d/x"}),  # path not cached: by inode
        (Change.FILE_CHANGED, "/g", 8, {"/f", "/h", "/s", "/d/x"}),
        # a path that named another inode when cached: both inodes go
        (Change.FILE_CHANGED, "/g", 7, {"/d/x"}),
        # names gone or moved, directory permissions: everything
        (Change.NAME_GONE, "/g", None, set()),
        (Change.NAME_GONE, "/d", None, set()),
        (Change.DIR_CHANGED, "/d", 3, set()),
    ],
)
def test_changed_drops_what_the_change_can_affect(
    change: Change, path: str, inode_id: int | None, left: set[str]
) -> None:
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    fetcher = Fetcher(_INODES)

    async def run() -> None:
        for p in _INODES:
            await cache.lookup(p, fetcher(p))
        cache.changed(change, path, inode_id)
        assert {p for p in _INODES if cache.get(p) is not None} == left
        # what was dropped is fetched again; what was left is not
        before = len(fetcher.calls)
        for p in _INODES:
            await cache.lookup(p, fetcher(p))
        assert sorted(fetcher.calls[before:]) == sorted(set(_INODES) - left)

    asyncio.run(run())
    scope = SCOPES[change]
    assert (scope is Scope.ALL) == (not left)


def test_drop_forgets_one_path_and_keeps_its_aliases() -> None:
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    fetcher = Fetcher(_INODES)

    async def run() -> None:
        for p in ("/f", "/h"):
            await cache.lookup(p, fetcher(p))
        cache.drop("/f")
        assert cache.get("/f") is None and cache.get("/h") == "/h@0"
        cache.changed(Change.FILE_CHANGED, "/x", 7)  # the alias index forgot /f, kept /h
        assert cache.get("/h") is None

    asyncio.run(run())


def test_a_failed_refresh_drops_the_entry() -> None:
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    fetcher = Fetcher({"/a": 1})

    async def gone() -> tuple[str, int]:
        raise FileNotFoundError("/a")

    async def run() -> None:
        await cache.lookup("/a", fetcher("/a"))
        with pytest.raises(FileNotFoundError):
            await cache.refresh("/a", gone)
        assert cache.get("/a") is None

    asyncio.run(run())


def test_refresh_always_asks_and_replaces() -> None:
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    fetcher = Fetcher({"/a": 1})

    async def run() -> None:
        await cache.lookup("/a", fetcher("/a"))
        fetcher.version = 1
        assert await cache.refresh("/a", fetcher("/a")) == "/a@1"
        assert await cache.lookup("/a", fetcher("/a")) == ("/a@1", True)

    asyncio.run(run())
    assert fetcher.calls == ["/a", "/a"]


# -- bounds -------------------------------------------------------------------------------

def test_least_recently_used_goes_first() -> None:
    cache: AttrCache[str] = AttrCache(10.0, max_entries=3, clock=Clock())
    fetcher = Fetcher({p: i for i, p in enumerate(["/a", "/b", "/c", "/d"])})

    async def run() -> None:
        for p in ("/a", "/b", "/c"):
            await cache.lookup(p, fetcher(p))
        assert cache.get("/a") is not None  # /a used again: /b is now the oldest
        await cache.lookup("/d", fetcher("/d"))
        assert len(cache) == 3
        assert cache.get("/b") is None
        assert all(cache.get(p) is not None for p in ("/a", "/c", "/d"))
        cache.changed(Change.FILE_CHANGED, "/x", 1)  # /b's inode index entry went with it
        assert cache.get("/b") is None and len(cache) == 3

    asyncio.run(run())


# -- concurrency ----------------------------------------------------------------------------

def test_misses_of_one_path_share_one_open() -> None:
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    fetcher = Fetcher({"/a": 1})

    async def run() -> None:
        fetcher.gate.clear()
        lookups = [asyncio.ensure_future(cache.lookup("/a", fetcher("/a"))) for _ in range(5)]
        await settle()
        fetcher.gate.set()
        assert await asyncio.gather(*lookups) == [("/a@0", False)] * 5

    asyncio.run(run())
    assert fetcher.calls == ["/a"]


def test_a_cancelled_waiter_does_not_cancel_the_shared_open() -> None:
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    fetcher = Fetcher({"/a": 1})

    async def run() -> None:
        fetcher.gate.clear()
        first = asyncio.ensure_future(cache.lookup("/a", fetcher("/a")))
        second = asyncio.ensure_future(cache.lookup("/a", fetcher("/a")))
        await settle()
        first.cancel()
        fetcher.gate.set()
        assert await second == ("/a@0", False)
        assert cache.get("/a") == "/a@0"

    asyncio.run(run())
    assert fetcher.calls == ["/a"]


def test_a_failed_open_reaches_every_waiter_and_is_not_kept() -> None:
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    calls = 0

    async def failing() -> tuple[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise FileNotFoundError("/a")

    async def run() -> None:
        results = await asyncio.gather(*(cache.lookup("/a", failing) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, FileNotFoundError) for r in results)
        assert len(cache) == 0
        with pytest.raises(FileNotFoundError):
            await cache.lookup("/a", failing)

    asyncio.run(run())
    assert calls == 2


def test_a_change_during_an_open_discards_its_answer_and_detaches_it() -> None:
    """Read-your-writes: a lookup after a change never gets an answer sent before it."""
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    fetcher = Fetcher({"/a": 1})

    async def run() -> None:
        fetcher.gate.clear()
        early = asyncio.ensure_future(cache.lookup("/a", fetcher("/a")))
        await settle()  # its Open is in flight (version 0)
        fetcher.version = 1
        cache.changed(Change.FILE_CHANGED, "/a", 1)
        late = asyncio.ensure_future(cache.lookup("/a", fetcher("/a")))  # must not join the early one
        await settle()
        fetcher.gate.set()
        assert await early == ("/a@0", False)  # it started before the change: its own answer
        assert await late == ("/a@1", False)
        assert cache.get("/a") == "/a@1"

    asyncio.run(run())
    assert fetcher.calls == ["/a", "/a"]


def test_an_older_answer_never_replaces_a_newer_one() -> None:
    clock = Clock()
    cache: AttrCache[str] = AttrCache(10.0, clock=clock)
    fetcher = Fetcher({"/a": 1})

    async def run() -> None:
        fetcher.gate.clear()
        slow = asyncio.ensure_future(cache.lookup("/a", fetcher("/a")))  # sent at 100.0, version 0
        await settle()
        clock.now += 1
        fetcher.version = 1
        fetcher.gate.set()
        assert await cache.refresh("/a", fetcher("/a")) == "/a@1"  # sent at 101.0, answered first
        assert await slow == ("/a@0", False)
        assert cache.get("/a") == "/a@1"

    asyncio.run(run())


def test_an_open_answered_after_a_change_is_not_kept() -> None:
    cache: AttrCache[str] = AttrCache(10.0, clock=Clock())
    fetcher = Fetcher({"/a": 1})

    async def run() -> None:
        fetcher.gate.clear()
        early = asyncio.ensure_future(cache.lookup("/a", fetcher("/a")))
        await settle()
        cache.changed(Change.NEW_NAME, "/elsewhere")  # any change: the answer may predate it
        fetcher.gate.set()
        assert await early == ("/a@0", False)
        assert cache.get("/a") is None

    asyncio.run(run())
