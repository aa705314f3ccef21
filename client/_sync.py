"""`SyncClient`: the blocking face of `Client`, for scripts and data-loader workers.

    with SyncClient("127.0.0.1:9000") as fs:
        fs.write_file("/d/x.bin", payload)
        with fs.open("/d/x.bin", "rb") as f:
            header = f.read(16)

A SyncClient owns a private event loop on a daemon thread (a *runner*, started on the
first call) and runs each method as one coroutine of the async `Client` there, waiting
for its result. Calls from several threads run concurrently on that one loop.

Lifecycle: unstarted -> running (first call) -> closed (`close()`, idempotent; a
closed client refuses calls with RuntimeError). Construction only validates options.

Pickling carries the address and the constructor options, nothing else; the copy
starts unstarted and connects on first use (spawn workers, `pool.map(fs.read_file, ...)`).

fork(): grpc.aio keeps one process-wide completion queue, served by a poller thread
and kept alive until every channel object is deallocated. fork() copies the queue but
not its thread, so a child that inherits a live grpc.aio channel waits forever on any
new call. No environment setting cures this (GRPC_ENABLE_FORK_SUPPORT=1, with or
without GRPC_POLL_STRATEGY=poll, the child still hangs): gRPC Python's fork handlers
cover only the sync stack, and core skips its own while the poller sits in the queue
("Other threads are currently calling into gRPC, skipping fork() handlers"). So we set
none; instead a fork hook stops every running SyncClient of the process *before*
fork: it waits for calls in flight, closes the Client, stops the loop and collects
garbage, so the channels are freed and grpc.aio shuts down. Parent and child then both
start a new runner lazily. A SyncClient with an open file (or calls that do not end in
time) cannot be stopped; the fork goes ahead, and SyncClients in the child refuse
calls with a RuntimeError saying why instead of hanging. A runner whose recorded pid
is not ours is never touched: closing a copied loop would unregister the parent's
descriptors from the epoll instance they share.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack

from emberfs.proto import mgmt_pb2

from ._client import Client
from ._file import EmberFile
from ._retry import RetryPolicy
from ._stat import StatFsResult, StatResult
from ._syncfile import Closing, RunBound, SyncFile

__all__ = ["ClientOptions", "SyncClient", "SyncFile"]  # SyncFile lives in _syncfile.py

T = TypeVar("T")
_log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 10.0  # closing the Client and joining the loop thread
_DRAIN_TIMEOUT_S = 30.0  # calls in flight that close() or a fork waits for


class ClientOptions(TypedDict, total=False):
    """The keyword options of `Client` (plain values, so they pickle)."""

    uid: int | None
    gid: int | None
    groups: Sequence[int] | None
    umask: int
    timeout: float
    retry: RetryPolicy | None
    verify_crc: bool
    max_inflight: int
    per_server_inflight: int
    readahead: int
    transport: str
    token: str | None  # travels with a pickled SyncClient: a worker gets the parent's token
    tls_ca: str | None  # the CA's PEM path (a path pickles; an SSLContext would not)
    attr_timeout: float  # seconds reads by path reuse an Open's answer (0: never)


@dataclass(eq=False)
class _Runner:
    """One event-loop thread and the connected Client on it, in the process `pid`."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    client: Client
    pid: int

    @classmethod
    def start(cls, address: str, options: ClientOptions) -> _Runner:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"emberfs-sync {address}", daemon=True)
        thread.start()

        async def connect() -> Client:
            client = Client(address, **options)  # on the loop: grpc.aio binds it
            await client.connect()
            return client

        try:
            client = asyncio.run_coroutine_threadsafe(connect(), loop).result(_STOP_TIMEOUT_S)
        except BaseException:
            _stop_loop(loop, thread)
            raise
        return cls(loop, thread, client, os.getpid())

    def stop(self) -> None:
        """Close the Client, cancel what is left on the loop, end the thread."""
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(_STOP_TIMEOUT_S)
        except Exception as exc:  # the loop goes anyway; the caller has nothing to retry
            _log.warning("closing the EmberFS client of %s failed: %r", self.client.address, exc)
        _stop_loop(self.loop, self.thread)

    async def _shutdown(self) -> None:
        try:
            await self.client.aclose()
        finally:
            me = asyncio.current_task()
            rest = [task for task in asyncio.all_tasks() if task is not me]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self.loop.shutdown_asyncgens()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(_STOP_TIMEOUT_S)
    if not thread.is_alive():
        loop.close()


async def _apply(make: Callable[[Client], Awaitable[T]], client: Client) -> T:
    return await make(client)


def _unpickle(address: str, options: ClientOptions) -> SyncClient:
    return SyncClient(address, **options)


def _mirrors(method: Callable[..., Any]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Give a blocking method the docstring of the async method it runs."""

    def decorate(blocking: Callable[..., T]) -> Callable[..., T]:
        blocking.__doc__ = method.__doc__
        return blocking

    return decorate


class SyncClient(Closing):
    """A blocking EmberFS client over a private event-loop thread; see the module docstring.

    Options are those of `Client`. Thread-safe; fork- and pickle-safe.
    """

    def __init__(self, address: str | Sequence[str], **options: Unpack[ClientOptions]) -> None:
        # Validates the address and options now; makes no gRPC object. The address is
        # kept as "a:1,b:2", which pickles and is what the runner's Client gets.
        self.address = Client(address, **options).address
        self._options: ClientOptions = options
        self._cond = threading.Condition()
        self._runner: _Runner | None = None
        self._closed = False
        self._calls = 0  # calls in flight on the runner
        self._draining = False  # close() or a fork is waiting for calls in flight
        self._files: weakref.WeakSet[SyncFile] = weakref.WeakSet()
        _LIVE.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._runner else "unstarted"
        return f"<SyncClient {self.address} {state}>"

    def __reduce__(self) -> tuple[Callable[..., SyncClient], tuple[str, ClientOptions]]:
        return _unpickle, (self.address, dict(self._options))  # type: ignore[return-value]

    def close(self) -> None:
        """Wait (bounded) for calls in flight, then close the Client and its loop. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            runner = self._take_runner()
        if runner is not None:
            runner.stop()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- running calls ---------------------------------------------------------------

    def _submit(self, make: Callable[[Client], Awaitable[T]], *, bound: Client | None = None) -> T:
        """Run `make(client)` on the loop and wait for it; `bound`: the call needs that client."""
        runner = self._enter(bound)
        try:
            future = asyncio.run_coroutine_threadsafe(_apply(make, runner.client), runner.loop)
            try:
                return future.result()
            except BaseException:
                future.cancel()  # KeyboardInterrupt and the like: do not leave it running
                raise
        finally:
            with self._cond:
                self._calls -= 1
                self._cond.notify_all()

    def _bound_to(self, client: Client) -> RunBound:
        """What a file opened with `client` runs its calls with (`_submit`, bound)."""

        def run(make: Callable[[], Awaitable[T]]) -> T:
            return self._submit(lambda _fs: make(), bound=client)

        return run

    def _enter(self, bound: Client | None) -> _Runner:
        with self._cond:
            while self._draining:
                self._cond.wait()
            if self._closed and bound is not None:
                raise ValueError("I/O operation on a file of a closed SyncClient")
            if self._closed:
                raise RuntimeError("the SyncClient is closed")
            if self._runner is not None and self._runner.pid != os.getpid():
                _ABANDONED.append(self._runner)  # a forked child: the parent's, never touch it
                self._runner = None
            if bound is not None and (self._runner is None or self._runner.client is not bound):
                raise ValueError("I/O operation on a file whose SyncClient was closed or forked")
            if self._runner is None:
                if _fork_blocked is not None:
                    raise RuntimeError(
                        f"this process was forked while {_fork_blocked}, so gRPC asyncio cannot "
                        "run here; fork before opening files, or use the 'spawn' start method"
                    )
                self._runner = _Runner.start(self.address, self._options)
            self._calls += 1
            return self._runner

    def _take_runner(self) -> _Runner | None:
        """Detach the runner once calls in flight are done (or the wait timed out). Locked."""
        self._draining = True
        try:
            self._cond.wait_for(lambda: self._calls == 0, _DRAIN_TIMEOUT_S)
        finally:
            self._draining = False
            self._cond.notify_all()
        runner, self._runner = self._runner, None
        if runner is not None and runner.pid != os.getpid():
            _ABANDONED.append(runner)
            return None
        return runner

    def _stop_for_fork(self) -> str | None:
        """Before fork: stop the runner; return why not when it cannot be stopped."""
        with self._cond:
            runner = self._runner
            if runner is None or runner.pid != os.getpid():
                return None
            if any(not f.closed for f in self._files):
                return f"{self!r} had open files"
            self._draining = True  # until the after-fork hooks: no new call may start
            if not self._cond.wait_for(lambda: self._calls == 0, _DRAIN_TIMEOUT_S):
                return f"{self!r} had calls in flight"
            self._runner = None
        runner.stop()
        return None

    def _after_fork(self, *, child: bool) -> None:
        if child:  # other threads are gone; a lock one of them held stays held
            self._cond = threading.Condition()
            self._calls = 0
        with self._cond:
            self._draining = False
            self._cond.notify_all()

    # -- data ------------------------------------------------------------------------

    @_mirrors(Client.read_file)
    def read_file(self, path: str) -> bytes:
        return self._submit(lambda fs: fs.read_file(path))

    @_mirrors(Client.write_file)
    def write_file(self, path: str, data: bytes | bytearray | memoryview, mode: int = 0o666) -> None:
        self._submit(lambda fs: fs.write_file(path, data, mode))

    @_mirrors(Client.read_range)
    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self._submit(lambda fs: fs.read_range(path, offset, length))

    @_mirrors(Client.read_into)
    def read_into(self, path: str, buffer: Any, offset: int = 0) -> int:
        return self._submit(lambda fs: fs.read_into(path, buffer, offset))

    @_mirrors(Client.read_ranges)
    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        return self._submit(lambda fs: fs.read_ranges(ranges))

    @_mirrors(Client.truncate)
    def truncate(self, path: str, length: int) -> None:
        self._submit(lambda fs: fs.truncate(path, length))

    @_mirrors(Client.open)
    def open(self, path: str, mode: str = "rb") -> SyncFile:
        async def open_file(fs: Client) -> tuple[Client, EmberFile]:
            return fs, await fs.open(path, mode)

        client, file = self._submit(open_file)
        sync_file = SyncFile(self._bound_to(client), file)
        with self._cond:
            self._files.add(sync_file)
        return sync_file

    # -- attributes ------------------------------------------------------------------

    @_mirrors(Client.stat)
    def stat(self, path: str, *, follow_symlinks: bool = True) -> StatResult:
        return self._submit(lambda fs: fs.stat(path, follow_symlinks=follow_symlinks))

    @_mirrors(Client.lstat)
    def lstat(self, path: str) -> StatResult:
        return self._submit(lambda fs: fs.lstat(path))

    @_mirrors(Client.exists)
    def exists(self, path: str) -> bool:
        return self._submit(lambda fs: fs.exists(path))

    @_mirrors(Client.chmod)
    def chmod(self, path: str, mode: int, *, follow_symlinks: bool = True) -> None:
        self._submit(lambda fs: fs.chmod(path, mode, follow_symlinks=follow_symlinks))

    @_mirrors(Client.chown)
    def chown(self, path: str, uid: int, gid: int, *, follow_symlinks: bool = True) -> None:
        self._submit(lambda fs: fs.chown(path, uid, gid, follow_symlinks=follow_symlinks))

    @_mirrors(Client.utime)
    def utime(
        self,
        path: str,
        times: tuple[float, float] | None = None,
        *,
        ns: tuple[int, int] | None = None,
        follow_symlinks: bool = True,
    ) -> None:
        self._submit(lambda fs: fs.utime(path, times, ns=ns, follow_symlinks=follow_symlinks))

    @_mirrors(Client.statfs)
    def statfs(self) -> StatFsResult:
        return self._submit(lambda fs: fs.statfs())

    # -- directories and names -------------------------------------------------------

    @_mirrors(Client.listdir)
    def listdir(self, path: str) -> list[str]:
        return self._submit(lambda fs: fs.listdir(path))

    @_mirrors(Client.listdir_attrs)
    def listdir_attrs(self, path: str) -> list[tuple[str, StatResult]]:
        return self._submit(lambda fs: fs.listdir_attrs(path))

    @_mirrors(Client.mkdir)
    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._submit(lambda fs: fs.mkdir(path, mode))

    @_mirrors(Client.makedirs)
    def makedirs(self, path: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        self._submit(lambda fs: fs.makedirs(path, mode, exist_ok))

    @_mirrors(Client.rmdir)
    def rmdir(self, path: str) -> None:
        self._submit(lambda fs: fs.rmdir(path))

    @_mirrors(Client.remove)
    def remove(self, path: str) -> None:
        self._submit(lambda fs: fs.remove(path))

    @_mirrors(Client.rmtree)
    def rmtree(self, path: str) -> None:
        self._submit(lambda fs: fs.rmtree(path))

    @_mirrors(Client.rename)
    def rename(self, src: str, dst: str) -> None:
        self._submit(lambda fs: fs.rename(src, dst))

    @_mirrors(Client.touch)
    def touch(self, path: str, mode: int = 0o666, exist_ok: bool = True) -> None:
        self._submit(lambda fs: fs.touch(path, mode, exist_ok))

    @_mirrors(Client.symlink)
    def symlink(self, target: str, path: str) -> None:
        self._submit(lambda fs: fs.symlink(target, path))

    @_mirrors(Client.readlink)
    def readlink(self, path: str) -> str:
        return self._submit(lambda fs: fs.readlink(path))

    @_mirrors(Client.link)
    def link(self, src: str, dst: str) -> None:
        self._submit(lambda fs: fs.link(src, dst))

    # -- cluster ---------------------------------------------------------------------

    @_mirrors(Client.routing)
    def routing(self) -> mgmt_pb2.RoutingInfo:
        return self._submit(lambda fs: fs.routing())

    @_mirrors(Client.init_chains)
    def init_chains(self, replicas: int, chains: int = 0) -> mgmt_pb2.InitChainsResponse:
        return self._submit(lambda fs: fs.init_chains(replicas, chains))


# -- fork --------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[SyncClient] = weakref.WeakSet()
# Runners inherited over fork(): kept referenced so that they are never deallocated
# (and so never closed) in the child.
_ABANDONED: list[_Runner] = []
# Why the last fork could not stop every SyncClient (then grpc.aio cannot run in the child).
_fork_blocked: str | None = None


def _before_fork() -> None:
    global _fork_blocked
    reasons = [why for client in list(_LIVE) if (why := client._stop_for_fork())]
    _fork_blocked = "; ".join(reasons) or None
    if reasons:
        _log.warning("fork() with a running EmberFS SyncClient: %s", _fork_blocked)
    if _LIVE:
        # A channel caught in a reference cycle keeps grpc.aio's process-wide queue
        # alive until collected; the child must not inherit it.
        gc.collect()


def _after_fork_in_parent() -> None:
    global _fork_blocked
    _fork_blocked = None
    for client in list(_LIVE):
        client._after_fork(child=False)


def _after_fork_in_child() -> None:
    for client in list(_LIVE):
        client._after_fork(child=True)


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
