"""The transport limit: byte ranges of a file over a raw asyncio socket on loopback.

The server is its own process (`python -m emberfs.bench.baselines.rawsocket --file F
--listen HOST:PORT`, ready line as EmberFS's servers print one) and answers each
request on a connection in turn: request = offset and length (two big-endian u64),
response = the byte count (u64) followed by the bytes, sent with `loop.sendfile`
(os.sendfile: no copy through Python). The client keeps a pool of connections, one
request in flight on each, and receives with a `BufferedProtocol` straight into the
caller's buffer: the fastest Python data path measured on the test machines, with no storage
logic, CRC or replication. What EmberFS cannot beat on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import struct
import sys
from pathlib import Path

from emberfs.client._launch import ServerProcess

from ..measure import WIRE

__all__ = ["RawSocketSource", "READY_PREFIX", "serve"]

READY_PREFIX = "emberfs-bench-socket listening on "
_REQUEST = struct.Struct("!QQ")
_REPLY = struct.Struct("!Q")


# -- server --------------------------------------------------------------------------


async def serve(path: Path, host: str, port: int) -> None:
    size = os.path.getsize(path)
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with open(path, "rb") as file:
                while True:
                    offset, length = _REQUEST.unpack(await reader.readexactly(_REQUEST.size))
                    count = max(0, min(length, size - offset))
                    writer.write(_REPLY.pack(count))
                    if count:
                        await loop.sendfile(writer.transport, file, offset, count)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()
    print(f"{READY_PREFIX}{bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve byte ranges of one file (benchmark baseline)")
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.file, host, int(port)))
    return 0


# -- client --------------------------------------------------------------------------


class _RangeProtocol(asyncio.BufferedProtocol):
    """One connection, one request at a time, received into the caller's buffer."""

    def __init__(self) -> None:
        self._head = bytearray(_REPLY.size)
        self._head_view = memoryview(self._head)
        self._head_got = 0
        self._body: memoryview = memoryview(b"")
        self._body_got = 0
        self._waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._head_got < _REPLY.size:
            return self._head_view[self._head_got:]
        return self._body[self._body_got:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._head_got < _REPLY.size:
            self._head_got += nbytes
            if self._head_got == _REPLY.size:
                (count,) = _REPLY.unpack(self._head)
                self._body = self._body[:count]
                if count == 0:
                    self._finish(0)
            return
        self._body_got += nbytes
        if self._body_got == len(self._body):
            self._finish(self._body_got)

    def _finish(self, count: int) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(count)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionError("the range server closed the connection"))

    async def read_into(self, offset: int, length: int, view: memoryview) -> int:
        assert self.transport is not None
        self._head_got, self._body, self._body_got = 0, view, 0
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(_REQUEST.pack(offset, length))
        return await self._waiter


class RawSocketSource:
    system = "raw socket"
    role = WIRE

    def __init__(self, directory: Path, file: Path, connections: int, max_read: int) -> None:
        self.unavailable = ""
        self._server = ServerProcess(
            [sys.executable, "-m", "emberfs.bench.baselines.rawsocket", "--file", str(file)],
            ready_prefix=READY_PREFIX, log_path=directory / "rawsocket.log",
        )
        self._connections = connections
        self._max_read = max_read
        self._pool: asyncio.Queue[tuple[_RangeProtocol, memoryview]] = asyncio.Queue()

    async def start(self) -> None:
        address = await asyncio.to_thread(self._server.start)
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        for _ in range(self._connections):
            _, protocol = await loop.create_connection(_RangeProtocol, host, int(port))
            self._pool.put_nowait((protocol, memoryview(bytearray(self._max_read))))

    def stop(self) -> None:
        while not self._pool.empty():
            protocol, _ = self._pool.get_nowait()
            if protocol.transport is not None:
                protocol.transport.close()
        self._server.stop()

    async def read_into(self, offset: int, length: int, view: memoryview | None) -> int:
        protocol, scratch = await self._pool.get()
        try:
            return await protocol.read_into(offset, length, view if view is not None else scratch[:length])
        finally:
            self._pool.put_nowait((protocol, scratch))

    async def read_bytes(self, offset: int, length: int) -> bytes:
        buffer = bytearray(length)
        count = await self.read_into(offset, length, memoryview(buffer))
        return bytes(buffer[:count])

    def server_pids(self) -> list[int] | None:
        pid = self._server.pid
        return [pid] if pid is not None else []


if __name__ == "__main__":
    sys.exit(main())
