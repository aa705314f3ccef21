"""EmberFS under test: a `LocalCluster` with one default chunk size, and a client on it.

The cluster runs in the run's directory (a metaserver and N storage servers, each its
own process on 127.0.0.1, chains of R replicas); the metaserver's default chunk size,
which every new file takes, is the cluster's `chunk_size`. Data workloads go through
the public `Client` API only: `write_file` and `read_file` for the sequential phases,
`read_range(path, offset, length)` for the random reads, and beside it `pread` on one
open `EmberFile` (what a data loader holding the file open does). CPU is counted for this
process (the client) and for every server process of this cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from emberfs.client import Client
from emberfs.client._launch import LocalCluster

from .measure import EMBERFS, MIBS, Row, progress, timed
from .workloads import CHECKED_READS, SEQ_READ, SEQ_WRITE, rand_name, size_label, verify

__all__ = ["EmberCluster"]

_START_TIMEOUT_S = 120.0
DATA_PATH = "/bench/data.bin"


class EmberCluster:
    role = EMBERFS

    def __init__(self, directory: Path, chunk_size: int, *, nodes: int, replicas: int) -> None:
        self.chunk_size = chunk_size
        self.system = f"emberfs {size_label(chunk_size)} chunks"
        self.nodes, self.replicas = nodes, replicas
        self.cluster = LocalCluster(directory, nodes=nodes, replicas=replicas, chunk_size=chunk_size)
        self.fs: Client | None = None
        self._stack = contextlib.AsyncExitStack()  # the client, opened as `async with` opens it
        self._handle: Any = None  # an EmberFile open on DATA_PATH, for the pread variant
        self.stripe: int | None = None

    @property
    def client(self) -> Client:
        if self.fs is None:
            raise RuntimeError("the cluster has not been started")
        return self.fs

    async def start(self) -> None:
        def say(text: str) -> None:
            progress(f"{self.system}: {text}")

        address = await asyncio.to_thread(self.cluster.start, _START_TIMEOUT_S, progress=say)
        self.fs = await self._stack.enter_async_context(Client(address))

    async def aclose(self) -> None:
        try:
            await self._stack.aclose()
        finally:
            self.cluster.stop()

    def server_pids(self) -> list[int]:
        return [p.pid for _, p in self.cluster.processes() if p.running and p.pid is not None]

    async def seq_write(self, data: bytes) -> Row:
        fs = self.client
        await fs.makedirs("/bench", exist_ok=True)

        async def op(i: int) -> int:
            await fs.write_file(DATA_PATH, data)
            return len(data)

        sample = await timed(op, in_flight=1, max_ops=1, max_seconds=float("inf"), server_pids=self.server_pids)
        st = await fs.stat(DATA_PATH)
        if st.st_size != len(data) or st.chunk_size != self.chunk_size:
            raise RuntimeError(f"{self.system}: wrote a file of {st.st_size} bytes in {st.chunk_size}-byte chunks")
        self.stripe = st.stripe
        row = Row.of(SEQ_WRITE, 0, self.system, EMBERFS, MIBS, sample,
                     detail=f"write_file, {self.replicas} replicas, stripe {st.stripe}")
        progress(row.describe())
        return row

    async def seq_read(self, data: bytes) -> Row:
        fs = self.client
        back: list[bytes] = []

        async def op(i: int) -> int:
            back.append(await fs.read_file(DATA_PATH))
            return len(back[-1])

        sample = await timed(op, in_flight=1, max_ops=1, max_seconds=float("inf"), server_pids=self.server_pids)
        if back[0] != data:
            raise RuntimeError(f"{self.system}: read_file returned different bytes than were written")
        row = Row.of(SEQ_READ, 0, self.system, EMBERFS, MIBS, sample, detail="read_file")
        progress(row.describe())
        return row

    async def random_read(self, data: bytes, read_size: int, depth: int, offsets: list[int],
                          max_seconds: float, api: str = "read_range") -> Row:
        """api "read_range": `Client.read_range(path, ...)` per read (the path looked up each
        time); "pread": `EmberFile.pread` on one open handle (no lookup per read)."""
        fs = self.client
        name = rand_name(read_size)
        system = self.system if api == "read_range" else f"{self.system}, pread"
        if api == "read_range":
            async def read(offset: int) -> bytes:
                return await fs.read_range(DATA_PATH, offset, read_size)
        else:
            if self._handle is None:
                self._handle = await self._stack.enter_async_context(fs.open(DATA_PATH, "rb"))
            handle = self._handle
            if not hasattr(handle, "pread"):  # before the client's file API had it
                return Row.missing(name, depth, system, EMBERFS, MIBS, "EmberFile.pread not available")

            async def read(offset: int) -> bytes:
                return await handle.pread(offset, read_size)  # type: ignore[no-any-return]

        checks = [(o, await read(o)) for o in offsets[:CHECKED_READS]]
        verify(system, data, checks, read_size)

        async def op(i: int) -> int:
            return len(await read(offsets[i]))

        sample = await timed(op, in_flight=depth, max_ops=len(offsets), max_seconds=max_seconds,
                             server_pids=self.server_pids)
        row = Row.of(name, depth, system, EMBERFS, MIBS, sample, detail=api)
        progress(row.describe())
        return row
