"""The serverio benchmark's client: one connection to a server process keeping
--in-flight requests outstanding, every response checked against its chunk's stamps
(bench/serverio_wire.py), and one timed measurement of it (`measure`).

Each measurement opens a connection, runs `warmup` seconds untimed, then `seconds`
timed: MiB/s (2^20 B) of whole responses, server CPU from /proc/<pid>/stat (utime +
stime, all threads), client CPU from time.process_time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from .serverio_wire import GIB, MIB, REQUEST, RESPONSE, STAMP_STRIDE

__all__ = ["STRETCH_S", "CorruptResponses", "Sample", "measure"]

CONNECT_S = 5.0
STRETCH_S = 5.0  # at most this long past --seconds, a window waits for its first response


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


async def measure(address: str, server_pid: int, slots: list[memoryview], chunks: list[int],
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
