"""The serverio benchmark's server process: serves chunk files over loopback with one
strategy (bench/serverio.py lists them; `python -m emberfs.bench.serverio --serve
STRATEGY` starts one).

Every request opens its chunk file and closes it after, as the storage server does;
reads run in one ThreadPoolExecutor of --threads (the loop's default executor, so
aiofiles uses it too); servers raise glibc's malloc thresholds as storage servers do.

Flow control: the transport strategies but -nofc stop writing at the protocol's
pause_writing() and go on at resume_writing(), so the transport holds about one
response. Ignoring it costs dearly on asyncio before Python 3.12 (the -nofc rows):
the transport keeps what the socket did not take in one bytearray, appends behind it
and deletes from its front after every send, each a memmove of everything still
queued, which is up to in-flight x chunk size. The sendfile strategies send one
response at a time by construction.

Pooled buffers and the transport: asyncio 3.11 copies what the socket did not take
into its own buffer, but uvloop keeps a reference to the memoryview until the kernel
has the bytes. So a pooled buffer goes back to the pool only when the bytes handed to
the transport minus `get_write_buffer_size()` have passed its end; the pool grows
when none is free (the client's stamp check catches a buffer reused too soon).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .serverio_wire import READY_PREFIX, REQUEST, RESPONSE

__all__ = ["read_cached", "run_on", "serve_main"]

T = TypeVar("T")


def _read_into(path: str, view: memoryview, offset: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got == 0:
                raise EOFError(f"{path} ends before {offset + len(view)}")
            done += got
    finally:
        os.close(fd)


def _read_bytes(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, offset)
        while len(data) < length:  # pread may return less for huge reads
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                raise EOFError(f"{path} ends before {offset + length}")
            data += more
        return data
    finally:
        os.close(fd)


def read_cached(path: str, view: memoryview, offset: int) -> bool:
    """Fill view inline if the page cache holds all of it (preadv2 RWF_NOWAIT)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.preadv(fd, [view], offset, os.RWF_NOWAIT) == len(view)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


class _Connection(asyncio.BufferedProtocol):
    """One client connection served with one transport-based strategy."""

    def __init__(self, strategy: str, directory: str) -> None:
        self.strategy = strategy
        self.directory = directory
        self.transport: Any = None  # uvloop's transport is no asyncio.Transport subclass
        self._stage = bytearray(64 * 1024)
        self._end = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._written = 0  # bytes handed to transport.write
        self._held: deque[tuple[int, bytearray]] = deque()  # (end mark, buffer) the transport may hold
        self._free: list[bytearray] = []
        self._sends: deque[tuple[int, str, int, int]] = deque()  # loop.sendfile's queue
        self._wake = asyncio.Event()
        self._flow_control = not strategy.endswith("-nofc")
        self._paused = False  # between pause_writing() and resume_writing()
        self._ready: deque[tuple[int, bytes | memoryview, bytearray | None]] = deque()  # waiting for resume

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.strategy == "loop.sendfile":
            self._spawn(self._sendfile_sender())

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self._tasks:
            task.cancel()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        while self._ready and not self._paused and not self.transport.is_closing():
            self._write(*self._ready.popleft())

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._stage)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        start = 0
        while self._end - start >= REQUEST.size:
            tag, chunk, offset, length = REQUEST.unpack_from(self._stage, start)
            start += REQUEST.size
            self._request(tag, os.path.join(self.directory, str(chunk)), offset, length)
        self._stage[:self._end - start] = self._stage[start:self._end]
        self._end -= start

    def eof_received(self) -> bool:
        return False

    def _request(self, tag: int, path: str, offset: int, length: int) -> None:
        if self.strategy == "aiofiles":
            self._spawn(self._aiofiles(tag, path, offset, length))
        elif self.strategy == "preadv-pool":
            self._spawn(self._pooled(tag, path, offset, length))
        elif self.strategy == "preadv-nowait":
            buffer = self._take(length)
            view = memoryview(buffer)[:length]
            if read_cached(path, view, offset):
                self._reply(tag, view, buffer)
            else:
                self._free.append(buffer)
                self._spawn(self._pooled(tag, path, offset, length))
        elif self.strategy in ("pread-bytes", "pread-bytes-nofc"):
            self._spawn(self._bytes(tag, path, offset, length))
        elif self.strategy == "loop.sendfile":
            self._sends.append((tag, path, offset, length))
            self._wake.set()
        else:
            raise ValueError(f"{self.strategy} is not served on a transport")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            print(f"serverio: {self.strategy} request failed: {task.exception()!r}", file=sys.stderr, flush=True)
            self.transport.abort()  # the client sees the connection drop and reports an error

    def _reply(self, tag: int, data: bytes | memoryview, buffer: bytearray | None = None) -> None:
        """Send a response now, or once the transport asks for more (buffer: the pooled
        buffer data is a view of, held until the kernel has its bytes)."""
        if self._flow_control and (self._paused or self._ready):
            self._ready.append((tag, data, buffer))
        elif not self.transport.is_closing():
            self._write(tag, data, buffer)

    def _write(self, tag: int, data: bytes | memoryview, buffer: bytearray | None) -> None:
        self.transport.write(RESPONSE.pack(tag, len(data)))
        self.transport.write(data)
        self._written += RESPONSE.size + len(data)
        if buffer is not None:
            self._held.append((self._written, buffer))

    # -- pooled buffers: back in the pool once the kernel has their bytes ----------------

    def _take(self, length: int) -> bytearray:
        sent = self._written - self.transport.get_write_buffer_size()
        while self._held and self._held[0][0] <= sent:
            self._free.append(self._held.popleft()[1])
        while self._free:
            buffer = self._free.pop()
            if len(buffer) >= length:
                return buffer
        return bytearray(length)

    # -- strategies ----------------------------------------------------------------------

    async def _aiofiles(self, tag: int, path: str, offset: int, length: int) -> None:
        import aiofiles

        async with aiofiles.open(path, "rb") as f:
            await f.seek(offset)
            data = await f.read(length)
        self._reply(tag, data)

    async def _pooled(self, tag: int, path: str, offset: int, length: int) -> None:
        buffer = self._take(length)
        view = memoryview(buffer)[:length]
        await asyncio.get_running_loop().run_in_executor(None, _read_into, path, view, offset)
        self._reply(tag, view, buffer)

    async def _bytes(self, tag: int, path: str, offset: int, length: int) -> None:
        data = await asyncio.get_running_loop().run_in_executor(None, _read_bytes, path, offset, length)
        self._reply(tag, data)

    async def _sendfile_sender(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._sends:
                self._wake.clear()
                await self._wake.wait()
            tag, path, offset, length = self._sends.popleft()
            with open(path, "rb") as file:
                self.transport.write(RESPONSE.pack(tag, length))
                sent = await loop.sendfile(self.transport, file, offset, length, fallback=False)
            if sent != length:
                raise EOFError(f"sendfile sent {sent} of {length} bytes of {path}")


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready = loop.create_future()

    def wake() -> None:
        loop.remove_writer(fd)
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


async def _raw_connection(conn: socket.socket, directory: str) -> None:
    """os.sendfile: requests read with sock_recv_into, responses sent one at a time."""
    loop = asyncio.get_running_loop()
    sends: deque[tuple[int, int, int, int]] = deque()
    wake = asyncio.Event()

    async def sender() -> None:
        fd = conn.fileno()
        while True:
            while not sends:
                wake.clear()
                await wake.wait()
            tag, chunk, offset, length = sends.popleft()
            await loop.sock_sendall(conn, RESPONSE.pack(tag, length))
            file_fd = os.open(os.path.join(directory, str(chunk)), os.O_RDONLY)
            try:
                done = 0
                while done < length:
                    try:
                        got = os.sendfile(fd, file_fd, offset + done, length - done)
                    except BlockingIOError:
                        await _writable(loop, fd)
                        continue
                    if got == 0:
                        raise EOFError(f"chunk {chunk} ends before {offset + length}")
                    done += got
            finally:
                os.close(file_fd)

    stage = bytearray(64 * 1024)
    end = 0
    task = loop.create_task(sender())
    try:
        while not task.done():
            got = await loop.sock_recv_into(conn, memoryview(stage)[end:])
            if got == 0:
                break
            end += got
            start = 0
            while end - start >= REQUEST.size:
                sends.append(REQUEST.unpack_from(stage, start))
                start += REQUEST.size
            stage[:end - start] = stage[start:end]
            end -= start
            wake.set()
    except OSError:
        pass  # the client went away
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 - a server bug: say so, the client sees the drop
            print(f"serverio: os.sendfile failed: {exc!r}", file=sys.stderr, flush=True)
        conn.close()


def _watch_parent(loop: asyncio.AbstractEventLoop, parent: int) -> None:
    """Exit when the benchmark that started this server is gone, however it ended."""
    if os.getppid() != parent:
        os._exit(0)
    loop.call_later(1.0, _watch_parent, loop, parent)


async def _serve(strategy: str, directory: str, host: str, port: int, threads: int) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="serverio-io"))
    _watch_parent(loop, os.getppid())
    if strategy == "os.sendfile":
        listener = socket.create_server((host, port))
        listener.setblocking(False)
        print(f"{READY_PREFIX}{host}:{listener.getsockname()[1]}", flush=True)
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports do
            loop.create_task(_raw_connection(conn, directory))
    server = await loop.create_server(lambda: _Connection(strategy, directory), host, port)
    print(f"{READY_PREFIX}{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def serve_main(args: argparse.Namespace) -> int:
    from emberfs.common.malloc import tune_malloc

    tune_malloc()  # as storage servers do: pread-bytes and aiofiles allocate per request
    host, _, port = args.listen.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        run_on(args.loop, _serve(args.serve, args.data, host, int(port), args.threads))
    return 0


def run_on(loop: str, main: Coroutine[Any, Any, T]) -> T:
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
