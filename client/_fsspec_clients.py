"""`LoopClients`: the connected `Client`s of one `EmberFileSystem`, one per event loop.

fsspec runs an async file system on whichever loop it is given: its own "fsspecIO"
thread when the file system is used synchronously, the caller's loop when it is
`asynchronous=True`. A grpc.aio channel belongs to the loop it was made on, so the
file system keeps one Client per loop, made and connected lazily on that loop by the
first call there. An instance carries only its address and options (fsspec pickles
it as its constructor arguments), so a copy in another process connects on first use.

fork(): a child that inherits a live grpc.aio channel hangs on its first call (see
`_sync.py` for why no gRPC setting cures it). As `SyncClient` does, a fork hook closes
every Client of this process before the fork: it waits (bounded) for calls in flight,
and new calls wait until the fork is done. A Client with a file open for writing (its
write session must not be cut) or on the forking thread's own running loop (which
cannot be waited for from inside it) is left open; the fork goes ahead, and calls in
the child then raise RuntimeError saying why instead of hanging. Clients inherited by
a child are never touched there (closing a copied loop's channel would disturb the
parent's descriptors); they are kept referenced so that they are never deallocated.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._client import Client

__all__ = ["LoopClients"]

_log = logging.getLogger(__name__)

_DRAIN_TIMEOUT_S = 10.0  # calls in flight a fork waits for
_CLOSE_TIMEOUT_S = 10.0  # closing one Client before a fork
_FORK_POLL_S = 0.005  # how often a call started during a fork checks that it is over


class LoopClients:
    """One connected Client per event loop, for the process that made them."""

    def __init__(self, address: str, options: dict[str, Any]) -> None:
        self.address = address
        self._options = options
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._clients: dict[asyncio.AbstractEventLoop, asyncio.Future[Client]] = {}
        self._calls = 0  # calls in flight, on any loop
        self._writers = 0  # files open for writing (each holds a write session)
        self._pid = os.getpid()
        _LIVE.add(self)

    @asynccontextmanager
    async def call(self) -> AsyncIterator[Client]:
        """The running loop's Client, counted as in flight until the block ends."""
        client = await self._acquire()
        try:
            yield client
        finally:
            with self._cond:
                self._calls -= 1
                self._cond.notify_all()

    async def open_writer(self) -> Client:
        """The running loop's Client for a file open for writing: `close_writer()` ends it."""
        async with self.call() as client:
            with self._lock:
                self._writers += 1
            return client

    def close_writer(self) -> None:
        with self._lock:
            self._writers -= 1

    async def aclose(self) -> None:
        """Close the running loop's Client (async users, before their loop ends)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            future = self._clients.pop(loop, None)
        if future is not None and future.done() and future.exception() is None:
            await future.result().aclose()

    async def _acquire(self) -> Client:
        loop = asyncio.get_running_loop()
        while True:
            while _forking.is_set():
                await asyncio.sleep(_FORK_POLL_S)
            with self._lock:
                if not _forking.is_set():  # checked again under the lock the fork takes
                    future = self._enter(loop)
                    break
        try:
            return await asyncio.shield(future)
        except BaseException:
            with self._cond:
                self._calls -= 1
                self._cond.notify_all()
            raise

    def _enter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Client]:
        """The loop's Client (connecting), counted as a call in flight. Locked."""
        if self._pid != os.getpid():
            self._forget_inherited()
        if _fork_blocked is not None:
            raise RuntimeError(
                f"this process was forked while {_fork_blocked}, so gRPC asyncio cannot run "
                "here; fork before opening files for writing, or use the 'spawn' start method"
            )
        for other in [lp for lp in self._clients if lp.is_closed()]:
            del self._clients[other]  # its loop ended; nothing can close it any more
        future = self._clients.get(loop)
        if future is None or (future.done() and (future.cancelled() or future.exception() is not None)):
            future = self._clients[loop] = loop.create_task(self._connect())
        self._calls += 1
        return future

    async def _connect(self) -> Client:
        client = Client(self.address, **self._options)  # on this loop: grpc.aio binds to it
        await client.connect()
        return client

    def _forget_inherited(self) -> None:
        """In a forked child: keep the parent's Clients referenced, never use them. Locked."""
        _ABANDONED.extend(self._clients.values())
        self._clients = {}
        self._calls = self._writers = 0
        self._pid = os.getpid()

    # -- fork --------------------------------------------------------------------------

    def _close_for_fork(self) -> str | None:
        """Before fork: close every Client of this process; say why not if one cannot be."""
        with self._cond:
            if self._pid != os.getpid() or not self._clients:
                return None
            if self._writers:
                return f"an EmberFileSystem of {self.address} had a file open for writing"
            here = _running_loop()
            if here is None or here not in self._clients:
                # Calls on the forking thread's own loop cannot finish while it waits.
                self._cond.wait_for(lambda: self._calls == 0, _DRAIN_TIMEOUT_S)
            if self._calls:
                return f"an EmberFileSystem of {self.address} had calls in flight"
            if here is not None and here in self._clients:
                return f"an EmberFileSystem of {self.address} had a Client on the forking thread's loop"
            clients, self._clients = self._clients, {}
        for loop, future in clients.items():
            _close_on(loop, future)
        return None

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._cond = threading.Condition(self._lock)
        self._forget_inherited()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _close_on(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Client]) -> None:
    """Close the Client of `future` on its own loop, from a thread that does not run it."""
    if loop.is_closed() or not future.done() or future.cancelled() or future.exception() is not None:
        return
    client = future.result()
    try:
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(_CLOSE_TIMEOUT_S)
        else:
            loop.run_until_complete(client.aclose())
    except Exception as exc:  # the fork goes on; the channel is dropped either way
        _log.warning("closing the EmberFS client of %s before fork failed: %r", client.address, exc)


_LIVE: weakref.WeakSet[LoopClients] = weakref.WeakSet()
_ABANDONED: list[Any] = []  # Clients inherited over fork: never deallocated in the child
_forking = threading.Event()  # set from before a fork until after it, in the parent
_fork_blocked: str | None = None  # why the last fork left a Client open (in the child)


def _before_fork() -> None:
    global _fork_blocked
    _forking.set()
    reasons = [why for pool in list(_LIVE) if (why := pool._close_for_fork())]
    _fork_blocked = "; ".join(reasons) or None
    if reasons:
        _log.warning("fork() with a live EmberFS client: %s", _fork_blocked)
    if _LIVE:
        gc.collect()  # a channel in a reference cycle keeps grpc.aio's queue alive


def _after_fork_in_parent() -> None:
    global _fork_blocked
    _fork_blocked = None
    _forking.clear()


def _after_fork_in_child() -> None:
    for pool in list(_LIVE):
        pool._after_fork_in_child()
    _forking.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
