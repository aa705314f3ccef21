"""How should a storage server read and send chunk bytes? Each way, measured (issue 8).

    python -m emberfs.bench.serverio [--quick] [--json FILE]

A server process serves whole chunk files to a client process over loopback; only
the server's way of reading and sending the bytes changes between rows:

    aiofiles       async with aiofiles.open(); await f.seek(); await f.read(); transport.write
    preadv-pool    os.preadv in the thread pool into a pooled buffer; transport.write of a view
    preadv-nowait  the same buffer filled inline on the loop by preadv2(RWF_NOWAIT) when the
                   page cache holds the bytes, in the thread pool when it does not
    pread-bytes    os.pread in the thread pool (fresh bytes each time); transport.write
    pread-bytes-nofc  the same, writing every response at once whatever the transport holds
                   (no flow control: storage/bulkserver.py's way today)
    loop.sendfile  await loop.sendfile(transport, file, offset, count): one response at a
                   time per connection (asyncio refuses writes while a sendfile runs)
    os.sendfile    os.sendfile on the raw socket (loop.sock_* and add_writer, no transport),
                   which is how uvloop, which has no loop.sendfile, can send files

Flow control: the transport strategies but -nofc stop writing at the protocol's
pause_writing() and go on at resume_writing(), so the transport holds about one
response. Ignoring it costs dearly on asyncio before Python 3.12 (the -nofc rows):
the transport keeps what the socket did not take in one bytearray, appends behind it
and deletes from its front after every send, each a memmove of everything still
queued, which is up to in-flight x chunk size. The sendfile strategies send one
response at a time by construction.

Every request opens its chunk file and closes it after, as the storage server does;
reads run in one ThreadPoolExecutor of --threads (the loop's default executor, so
aiofiles uses it too); servers raise glibc's malloc thresholds as storage servers do.

Wire format, kept minimal so that it measures the strategy rather than a protocol:
request = 16 bytes `<IIII` (tag, chunk number, offset, length); response = 8 bytes
`<II` (tag, length) and the bytes. The tag is the client's in-flight slot, whose
preallocated buffer the payload lands in (BufferedProtocol); responses may come in
any order. The client keeps --in-flight requests outstanding on one connection.

Pooled buffers and the transport: asyncio 3.11 copies what the socket did not take
into its own buffer, but uvloop keeps a reference to the memoryview until the kernel
has the bytes. So a pooled buffer goes back to the pool only when the bytes handed to
the transport minus `get_write_buffer_size()` have passed its end; the pool grows
when none is free. Every 4 KiB block of every chunk file starts with a stamp (chunk
number, block number) that the client checks in every response: a buffer reused too
soon makes a run fail as corrupt instead of looking fast.

Method: the data set (--data-mib per chunk size, split into chunk files, written,
fsynced and read once so that the page cache is warm) is served by one server process
per event loop and strategy, each idle while the others run. A round measures every
(chunk size, in flight, loop, strategy) once, the strategies of one configuration
back to back, their order rotated every round; rounds repeat until --rounds or the
--budget. Each measurement opens a connection, runs --warmup seconds untimed, then
--seconds timed: MiB/s (2^20 B) of whole responses, server CPU from
/proc/<pid>/stat (utime + stime, all threads), client CPU from time.process_time;
client and server run the same loop kind. Because this 2-core machine is shared and
noisy, the table gives, besides medians over rounds and their spread (max - min) /
median, each row's median per-round ratio to pread-bytes (measured seconds apart, so
drift of the whole machine cancels) and how many rounds it was the fastest of its
configuration; server CPU per GiB varies far less than MiB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
from array import array
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["LOOPS", "STRATEGIES", "Config", "main", "run"]

T = TypeVar("T")

STRATEGIES = ("aiofiles", "preadv-pool", "preadv-nowait", "pread-bytes", "pread-bytes-nofc", "loop.sendfile",
              "os.sendfile")
LOOPS = ("asyncio", "uvloop")
REFERENCE = "pread-bytes"  # every row's per-round MiB/s is also given as a ratio to this one's
REQUEST = struct.Struct("<IIII")  # tag, chunk number, offset, length
RESPONSE = struct.Struct("<II")  # tag, length
READY_PREFIX = "emberfs-bench-serverio listening on "
MIB, GIB = 1 << 20, 1 << 30
STAMP_EVERY = 4096  # bytes between stamps; each stamp is a u64 (chunk << 32 | block)
STAMP_STRIDE = STAMP_EVERY // 8
CONNECT_S = 5.0
STRETCH_S = 5.0  # at most this long past --seconds, a window waits for its first response
DRAIN_S = 15.0 + STRETCH_S  # past warmup + seconds, a measurement that has not finished is killed
SERVER_START_S = 20.0


# -- server ----------------------------------------------------------------------------


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


def _read_cached(path: str, view: memoryview, offset: int) -> bool:
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
            if _read_cached(path, view, offset):
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


def _serve_main(args: argparse.Namespace) -> int:
    from emberfs.common.malloc import tune_malloc

    tune_malloc()  # as storage servers do: pread-bytes and aiofiles allocate per request
    host, _, port = args.listen.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        _run_on(args.loop, _serve(args.serve, args.data, host, int(port), args.threads))
    return 0


def _run_on(loop: str, main: Coroutine[Any, Any, T]) -> T:
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


# -- client ----------------------------------------------------------------------------


class _Client(asyncio.BufferedProtocol):
    """Keeps one request per slot in flight; each response lands in its slot's buffer
    and is checked against the chunk's stamps before the slot asks again."""

    def __init__(self, slots: list[memoryview], chunks: list[int], stamps: dict[int, bytes]) -> None:
        self.slots = slots
        self.length = len(slots[0])
        self.chunks = chunks
        self.stamps = stamps
        self.transport: Any = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.bytes_done = 0
        self.corrupt = 0
        self.stopping = False
        self._outstanding = 0
        self._next = 0
        self._asked = [0] * len(slots)  # the chunk each slot asked for
        self._head = bytearray(RESPONSE.size)
        self._head_got = 0
        self._body: memoryview | None = None
        self._body_got = 0
        self._tag = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the server closed the connection{f': {exc}' if exc else ''}"))

    def eof_received(self) -> bool:
        return False

    def start(self) -> None:
        for tag in range(len(self.slots)):
            self._ask(tag)

    def stop(self) -> None:
        self.stopping = True
        if self._outstanding == 0 and not self.finished.done():
            self.finished.set_result(None)

    def _ask(self, tag: int) -> None:
        chunk = self.chunks[self._next % len(self.chunks)]
        self._next += 1
        self._asked[tag] = chunk
        self._outstanding += 1
        self.transport.write(REQUEST.pack(tag, chunk, 0, self.length))

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is not None:
            return self._body[self._body_got:]
        return memoryview(self._head)[self._head_got:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._body is None:
            self._head_got += nbytes
            if self._head_got == RESPONSE.size:
                self._head_got = 0
                tag, length = RESPONSE.unpack(self._head)
                if tag >= len(self.slots) or length != self.length:
                    self._fail(ConnectionError(f"bad response header: tag {tag}, length {length}"))
                    self.transport.abort()
                    return
                self._tag, self._body, self._body_got = tag, self.slots[tag], 0
            return
        self._body_got += nbytes
        if self._body_got < self.length:
            return
        body, tag, self._body = self._body, self._tag, None
        if body.cast("Q")[::STAMP_STRIDE].tobytes() != self.stamps[self._asked[tag]]:
            self.corrupt += 1
        self.bytes_done += self.length
        self._outstanding -= 1
        if not self.stopping:
            self._ask(tag)
        elif self._outstanding == 0 and not self.finished.done():
            self.finished.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if not self.finished.done():
            self.finished.set_exception(exc)


@dataclass
class Sample:
    round: int
    mib_s: float
    server_cpu_s_per_gib: float
    client_cpu_s_per_gib: float
    nbytes: int
    seconds: float


class CorruptResponses(Exception):
    """Responses whose stamps are not the chunk's: a buffer was reused too soon."""


async def _measure(address: str, server_pid: int, slots: list[memoryview], chunks: list[int],
                   stamps: dict[int, bytes], warmup: float, seconds: float, round_no: int) -> Sample:
    from .measure import proc_cpu_seconds

    loop = asyncio.get_running_loop()
    host, _, port = address.rpartition(":")
    transport, client = await asyncio.wait_for(
        loop.create_connection(lambda: _Client(slots, chunks, stamps), host, int(port)), CONNECT_S)

    async def pause(s: float) -> None:
        await asyncio.wait([client.finished], timeout=s)
        if client.finished.done():
            client.finished.result()  # raises what went wrong
            raise ConnectionError("the measurement ended early")

    def snapshot() -> tuple[float, int, float, float]:
        return time.perf_counter(), client.bytes_done, proc_cpu_seconds(server_pid), time.process_time()

    try:
        client.start()
        await pause(warmup)
        t0, b0, s0, c0 = snapshot()
        await pause(seconds)
        # A window shorter than one response (--quick on a loaded machine) is stretched
        # until one completes, so every row measures something; the time counts.
        stretch = time.perf_counter() + STRETCH_S
        while client.bytes_done == b0 and time.perf_counter() < stretch:
            await pause(0.05)
        t1, b1, s1, c1 = snapshot()
        client.stop()
        await client.finished
    finally:
        transport.close()
    if client.corrupt:
        raise CorruptResponses(f"{client.corrupt} responses carried the wrong chunk's bytes")
    nbytes, elapsed = b1 - b0, t1 - t0
    if nbytes <= 0:
        raise ConnectionError("no response completed in the timed window")
    gib = nbytes / GIB
    return Sample(round_no, nbytes / MIB / elapsed, (s1 - s0) / gib, (c1 - c0) / gib, nbytes, elapsed)


# -- data set ----------------------------------------------------------------------------


def _stamps(chunk: int, chunk_size: int) -> array[int]:
    return array("Q", ((chunk << 32) | block for block in range(chunk_size // STAMP_EVERY)))


def _write_data(directory: Path, chunk_sizes: Sequence[int], data_bytes: int) -> dict[int, list[int]]:
    """Chunk files of each size, numbered apart (`directory/<number>`); their numbers by size."""
    filler = bytearray(os.urandom(max(chunk_sizes)))
    numbers: dict[int, list[int]] = {}
    first = 0
    for size in chunk_sizes:
        count = max(1, data_bytes // size)
        numbers[size] = list(range(first, first + count))
        first += count
        body = filler[:size]
        for chunk in numbers[size]:
            memoryview(body).cast("Q")[::STAMP_STRIDE] = memoryview(_stamps(chunk, size))
            with open(directory / str(chunk), "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())  # no writeback during the rounds
    for path in directory.iterdir():  # warm: every byte read once
        with open(path, "rb") as f:
            while f.read(8 * MIB):
                pass
    return numbers


# -- availability --------------------------------------------------------------------------


async def _probe_loop_sendfile(path: Path) -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    try:
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        try:
            with open(path, "rb") as f:
                await loop.sendfile(transport, f, 0, 8, fallback=False)
        finally:
            transport.close()
    finally:
        b.close()


def _unavailable(strategy: str, loop: str, sample_file: Path) -> str:
    """Why this strategy cannot run on this loop here ("" when it can)."""
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed (pip install 'emberfs[fast]')"
    if strategy == "aiofiles" and importlib.util.find_spec("aiofiles") is None:
        return "aiofiles is not installed"
    if strategy == "preadv-nowait":
        if not hasattr(os, "RWF_NOWAIT"):
            return "os.RWF_NOWAIT is not available on this platform"
        try:
            _read_cached(str(sample_file), memoryview(bytearray(8)), 0)
        except OSError as exc:
            return f"preadv2(RWF_NOWAIT) fails here: {exc}"
    if strategy == "os.sendfile" and not hasattr(os, "sendfile"):
        return "os.sendfile is not available on this platform"
    if strategy == "loop.sendfile":
        try:
            _run_on(loop, _probe_loop_sendfile(sample_file))
        except NotImplementedError:
            return f"{loop} does not implement loop.sendfile (NotImplementedError); see os.sendfile"
        except Exception as exc:  # noqa: BLE001 - any refusal is the reason to report
            return f"loop.sendfile fails on {loop}: {exc!r}"
    return ""


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    rounds: int = 5
    seconds: float = 0.8
    warmup: float = 0.2
    data_mib: int = 256
    chunk_sizes: tuple[int, ...] = (1 * MIB, 4 * MIB)
    in_flight: tuple[int, ...] = (4, 16)
    loops: tuple[str, ...] = LOOPS
    strategies: tuple[str, ...] = STRATEGIES
    threads: int = 8  # storage/server.py's IO_THREADS
    budget_s: float = 330.0  # no new round starts past this (a round is never cut short)
    quick: bool = False
    directory: str | None = None  # where the temporary data set goes (None: the system's)


@dataclass
class Result:
    loop: str
    chunk_size: int
    in_flight: int
    strategy: str
    unavailable: str = ""
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rounds_won: int = 0

    def median(self, name: str) -> float | None:
        values = [getattr(s, name) for s in self.samples]
        return statistics.median(values) if values else None

    def paired_ratio(self, reference: Result | None) -> float | None:
        """Median over rounds of MiB/s / the reference's MiB/s in the same round: what
        shifts the whole machine between rounds cancels out."""
        by_round = {s.round: s.mib_s for s in reference.samples} if reference is not None else {}
        ratios = [s.mib_s / by_round[s.round] for s in self.samples if by_round.get(s.round)]
        return statistics.median(ratios) if ratios else None

    @property
    def spread(self) -> float | None:
        """(max - min) / median of MiB/s over the rounds."""
        values = [s.mib_s for s in self.samples]
        return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "median_mib_s": self.median("mib_s"),
            "median_server_cpu_s_per_gib": self.median("server_cpu_s_per_gib"),
            "median_client_cpu_s_per_gib": self.median("client_cpu_s_per_gib"),
            "spread": self.spread,
        }


def progress(text: str) -> None:
    print(f"[serverio] {text}", file=sys.stderr, flush=True)


def run(config: Config) -> dict[str, Any]:
    """Measure every row; the JSON document (parameters, machine, rows, summary)."""
    from emberfs.client._launch import ServerProcess

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="emberfs-serverio-", dir=config.directory))
    servers: dict[tuple[str, str], ServerProcess] = {}
    try:
        data = work / "chunks"
        data.mkdir()
        progress(f"writing {len(config.chunk_sizes)} x {config.data_mib} MiB of chunk files in {data}")
        numbers = _write_data(data, config.chunk_sizes, config.data_mib * MIB)
        sample_file = data / str(numbers[config.chunk_sizes[0]][0])
        stamps = {c: _stamps(c, size).tobytes() for size, chunks in numbers.items() for c in chunks}
        why = {(loop, s): _unavailable(s, loop, sample_file) for loop in config.loops for s in config.strategies}

        def server(loop: str, strategy: str) -> ServerProcess:
            return ServerProcess(
                [sys.executable, "-m", "emberfs.bench.serverio", "--serve", strategy, "--loop", loop,
                 "--data", str(data), "--threads", str(config.threads)],
                ready_prefix=READY_PREFIX, log_path=work / f"server-{loop}-{strategy}.log")

        def start(key: tuple[str, str]) -> None:
            try:
                servers[key].start(SERVER_START_S)
            except Exception as exc:  # noqa: BLE001 - the row says why
                why[key] = f"the server did not start: {exc}"

        for key, reason in why.items():
            if not reason:
                servers[key] = server(*key)
        progress(f"starting {len(servers)} server processes")
        with ThreadPoolExecutor(max(1, len(servers))) as pool:
            list(pool.map(start, list(servers)))

        results = {(loop, size, depth, s): Result(loop, size, depth, s, why[loop, s])
                   for size in config.chunk_sizes for depth in config.in_flight
                   for loop in config.loops for s in config.strategies}
        buffers = {size: [bytearray(1) * size for _ in range(max(config.in_flight))] for size in config.chunk_sizes}
        rounds_done, round_s = 0, 0.0
        for round_no in range(config.rounds):
            if rounds_done and time.monotonic() - started + round_s > config.budget_s:
                progress(f"budget of {config.budget_s:g} s reached after {rounds_done} rounds")
                break
            round_start = time.monotonic()
            order = config.strategies[round_no % len(config.strategies):] + \
                config.strategies[:round_no % len(config.strategies)]
            for size in config.chunk_sizes:
                for depth in config.in_flight:
                    slots = [memoryview(b)[:size] for b in buffers[size][:depth]]
                    for loop in config.loops:
                        for strategy in order:
                            result = results[loop, size, depth, strategy]
                            if result.unavailable:
                                continue
                            proc = servers[loop, strategy]
                            try:
                                assert proc.address is not None and proc.pid is not None
                                sample = _run_on(loop, asyncio.wait_for(
                                    _measure(proc.address, proc.pid, slots, numbers[size], stamps,
                                             config.warmup, config.seconds, round_no),
                                    config.warmup + config.seconds + DRAIN_S))
                            except Exception as exc:  # noqa: BLE001 - recorded; the server starts afresh
                                result.errors.append(f"round {round_no}: {exc!r}")
                                progress(f"{loop} {strategy} {size // MIB} MiB x{depth}: FAILED {exc!r}")
                                proc.kill()
                                start((loop, strategy))
                                if why[loop, strategy]:
                                    for r in results.values():
                                        if (r.loop, r.strategy) == (loop, strategy):
                                            r.unavailable = why[loop, strategy]
                                continue
                            result.samples.append(sample)
                            progress(f"round {round_no + 1}/{config.rounds} {loop:<7} {size // MIB} MiB "
                                     f"x{depth:<2} {strategy:<13} {sample.mib_s:8.0f} MiB/s  server "
                                     f"{sample.server_cpu_s_per_gib:.2f} s/GiB")
                    _count_wins([r for r in results.values() if (r.chunk_size, r.in_flight) == (size, depth)],
                                round_no)
            rounds_done += 1
            round_s = time.monotonic() - round_start
        return _document(config, list(results.values()), rounds_done, time.monotonic() - started)
    finally:
        for proc in servers.values():
            proc.stop(grace=2.0)
        shutil.rmtree(work, ignore_errors=True)


def _count_wins(results: list[Result], round_no: int) -> None:
    """Credit, per loop, the fastest strategy of this round in one configuration."""
    for loop in {r.loop for r in results}:
        ran = [(s.mib_s, r) for r in results if r.loop == loop for s in r.samples if s.round == round_no]
        if len(ran) > 1:
            max(ran, key=lambda pair: pair[0])[1].rounds_won += 1


# -- report ----------------------------------------------------------------------------------


def _reference(results: list[Result], row: Result) -> Result | None:
    return next((r for r in results if (r.loop, r.chunk_size, r.in_flight, r.strategy)
                 == (row.loop, row.chunk_size, row.in_flight, REFERENCE)), None)


def _summary(results: list[Result]) -> list[dict[str, Any]]:
    """Per loop and configuration: the fastest (by the paired ratio to the reference when
    it ran, else by median MiB/s) and the lowest-server-CPU strategy."""
    out = []
    for loop, size, depth in dict.fromkeys((r.loop, r.chunk_size, r.in_flight) for r in results):
        ran = [r for r in results if (r.loop, r.chunk_size, r.in_flight) == (loop, size, depth) and r.samples]
        if not ran:
            continue
        reference = _reference(results, ran[0])
        fastest = max(ran, key=lambda r: (r.paired_ratio(reference) or 0.0, r.median("mib_s") or 0.0))
        cheapest = min(ran, key=lambda r: r.median("server_cpu_s_per_gib") or float("inf"))
        out.append({"loop": loop, "chunk_size": size, "in_flight": depth,
                    "fastest": fastest.strategy, "fastest_mib_s": fastest.median("mib_s"),
                    "fastest_vs_reference": fastest.paired_ratio(reference),
                    "fastest_rounds_won": fastest.rounds_won, "rounds": len(fastest.samples),
                    "cheapest_server_cpu": cheapest.strategy,
                    "cheapest_server_cpu_s_per_gib": cheapest.median("server_cpu_s_per_gib")})
    return out


def _document(config: Config, results: list[Result], rounds: int, elapsed: float) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "parameters": asdict(config) | {"rounds_done": rounds, "elapsed_s": elapsed, "reference": REFERENCE},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "uvloop": version("uvloop"), "aiofiles": version("aiofiles")},
        "rows": [r.as_dict() | {"vs_reference": r.paired_ratio(_reference(results, r))} for r in results],
        "summary": _summary(results),
    }


def render(doc: dict[str, Any]) -> str:
    p = doc["parameters"]
    lines = [
        f"Server read strategies over loopback: medians of {p['rounds_done']} interleaved rounds of "
        f"{p['seconds']:g} s, {p['data_mib']} MiB of chunk files per size, page cache warm.",
        "MiB/s = 2^20 B/s; spread = (max - min) / median of MiB/s; vs pread = median over rounds of "
        f"MiB/s / {p['reference']}'s in the same round;",
        "CPU = core-seconds per GiB moved; won = rounds in which the row was the fastest of its loop's.",
        "",
        f"{'loop':<8} {'chunk':>6} {'in-flight':>9}  {'strategy':<16} {'MiB/s':>7} {'spread':>7} {'vs pread':>8} "
        f"{'server CPU':>10} {'client CPU':>10} {'won':>5}",
    ]
    rows = sorted(doc["rows"], key=lambda r: (r["loop"], r["chunk_size"], r["in_flight"],
                                              STRATEGIES.index(r["strategy"])))
    for r in rows:
        where = f"{r['loop']:<8} {str(r['chunk_size'] // MIB) + ' MiB':>6} {r['in_flight']:>9}  {r['strategy']:<16}"
        if r["unavailable"]:
            lines.append(f"{where} unavailable: {r['unavailable']}")
        elif not r["samples"]:
            lines.append(f"{where} FAILED: {r['errors'][-1] if r['errors'] else 'no samples'}")
        else:
            spread = f"{100 * r['spread']:.0f}%" if r["spread"] is not None else "-"
            paired = f"{r['vs_reference']:.2f}x" if r["vs_reference"] is not None else "-"
            lines.append(f"{where} {r['median_mib_s']:>7.0f} {spread:>7} {paired:>8} "
                         f"{r['median_server_cpu_s_per_gib']:>10.2f} "
                         f"{r['median_client_cpu_s_per_gib']:>10.2f} {r['rounds_won']:>2}/{len(r['samples'])}"
                         + (f"  ({len(r['errors'])} failed)" if r["errors"] else ""))
    lines += ["", "Fastest and cheapest (server CPU) per loop and configuration:"]
    for s in doc["summary"]:
        lines.append(f"  {s['loop']:<8} {s['chunk_size'] // MIB} MiB x{s['in_flight']:<3} fastest "
                     f"{s['fastest']:<16} {s['fastest_mib_s']:>6.0f} MiB/s"
                     + (f" {s['fastest_vs_reference']:.2f}x pread" if s["fastest_vs_reference"] else "")
                     + f" (won {s['fastest_rounds_won']}/"
                     f"{s['rounds']})   lowest server CPU {s['cheapest_server_cpu']:<16} "
                     f"{s['cheapest_server_cpu_s_per_gib']:.2f} s/GiB")
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------


def _sizes(text: str) -> tuple[int, ...]:
    units = {"K": 1 << 10, "M": MIB}
    out = []
    for part in text.split(","):
        part = part.strip().upper().removesuffix("IB").removesuffix("B")
        out.append(int(part[:-1]) * units[part[-1]] if part[-1:] in units else int(part))
    if any(size % STAMP_EVERY or size <= 0 for size in out):
        raise argparse.ArgumentTypeError(f"chunk sizes must be positive multiples of {STAMP_EVERY}")
    return tuple(out)


def _names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return names
    return parse


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(","))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emberfs.bench.serverio",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (1 round, 32 MiB)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 1)")
    parser.add_argument("--seconds", type=float, help="timed seconds per measurement (default 0.8; --quick 0.1)")
    parser.add_argument("--warmup", type=float, help="untimed seconds before each (default 0.2; --quick 0.05)")
    parser.add_argument("--data-mib", type=int, help="MiB of chunk files per chunk size (default 256; --quick 32)")
    parser.add_argument("--budget", type=float, help="seconds after which no new round starts (default 330)")
    parser.add_argument("--chunk-sizes", type=_sizes, default=Config.chunk_sizes, help="default 1M,4M")
    parser.add_argument("--in-flight", type=_ints, default=Config.in_flight, help="default 4,16")
    parser.add_argument("--loops", type=_names(LOOPS), default=Config.loops, help="default asyncio,uvloop")
    parser.add_argument("--strategies", type=_names(STRATEGIES), default=Config.strategies,
                        help=f"default {','.join(STRATEGIES)}")
    parser.add_argument("--threads", type=int, default=Config.threads, help="server read threads (default 8)")
    parser.add_argument("--dir", help="where the temporary data set goes (default: the system's temp dir)")
    # The server processes this run starts: python -m emberfs.bench.serverio --serve STRATEGY ...
    parser.add_argument("--serve", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--listen", default="127.0.0.1:0", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return _serve_main(args)

    quick = args.quick

    def pick(value: Any, default: Any, quick_default: Any) -> Any:
        return value if value is not None else (quick_default if quick else default)

    config = Config(
        rounds=pick(args.rounds, Config.rounds, 1), seconds=pick(args.seconds, Config.seconds, 0.1),
        warmup=pick(args.warmup, Config.warmup, 0.05), data_mib=pick(args.data_mib, Config.data_mib, 32),
        chunk_sizes=args.chunk_sizes, in_flight=args.in_flight, loops=args.loops, strategies=args.strategies,
        threads=args.threads, budget_s=pick(args.budget, Config.budget_s, 25.0), quick=quick, directory=args.dir)
    try:
        doc = run(config)
    except KeyboardInterrupt:
        return 130
    print(render(doc))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
