"""Many clients at once, and directories larger than one List page."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from emberfs.client import Client
from emberfs.proto import meta_pb2, meta_pb2_grpc

pytestmark = pytest.mark.timeout(120)

CLIENTS = 8
CREATES_PER_CLIENT = 100
BIG_DIR = 5000


def test_concurrent_clients_create_in_one_directory(shared_meta, workdir, arun) -> None:
    async def one_client(k: int) -> list[str]:
        async with Client(shared_meta.address) as c:
            names = [f"c{k}-{i:03d}" for i in range(CREATES_PER_CLIENT)]
            # Each client keeps several requests in flight, so the server sees
            # interleaved writes from all clients at once.
            sem = asyncio.Semaphore(16)

            async def create(name: str) -> None:
                async with sem:
                    await c.touch(f"{workdir}/{name}", exist_ok=False)

            await asyncio.gather(*(create(n) for n in names))
            return names

    async def body() -> None:
        made = await asyncio.gather(*(one_client(k) for k in range(CLIENTS)))
        expected = sorted(n for names in made for n in names)
        async with Client(shared_meta.address) as c:
            listed = await c.listdir(workdir)
            assert listed == expected  # each exactly once, in name order
            assert len(listed) == CLIENTS * CREATES_PER_CLIENT
            inodes = {st.st_ino for _, st in await c.listdir_attrs(workdir)}
            assert len(inodes) == len(listed)  # no two names share an inode

    arun(body(), timeout=100)


def test_big_directory_lists_across_pages_in_order(shared_meta, workdir, arun) -> None:
    names = [f"e{i:05d}" for i in range(BIG_DIR)]

    async def body() -> None:
        async with Client(shared_meta.address) as c:
            sem = asyncio.Semaphore(64)

            async def create(name: str) -> None:
                async with sem:
                    await c.touch(f"{workdir}/{name}", exist_ok=False)

            # Created in a shuffled order so the listing order is the server's doing.
            order = names[::2] + names[1::2][::-1]
            await asyncio.gather(*(create(n) for n in order))
            assert await c.listdir(workdir) == names
            attrs = await c.listdir_attrs(workdir)
            assert [n for n, _ in attrs] == names
            assert all(st.st_nlink == 1 and st.st_size == 0 for _, st in attrs)
        # The listing above really was paged: the server's own page is smaller.
        async with grpc.aio.insecure_channel(shared_meta.address) as channel:
            page = await meta_pb2_grpc.MetaStub(channel).List(meta_pb2.ListRequest(path=workdir), timeout=10)
            assert page.more and 0 < len(page.entries) < BIG_DIR
            assert [e.name for e in page.entries] == names[: len(page.entries)]

    arun(body(), timeout=110)
