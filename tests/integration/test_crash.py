"""kill -9 of the metaserver while acknowledged operations stream in, then restart.

The metaserver acknowledges an operation only after its LMDB transaction committed
with sync=True, so every acknowledged mkdir, create and rename must be there after a
crash. Operations cut off by the crash may have happened or not, but never halfway.
"""

from __future__ import annotations

import asyncio
import stat

import pytest

from emberfs.client import Client, RetryPolicy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

WORKERS = 16
# Give up quickly when the server is gone: the test only counts what was acknowledged.
NO_PATIENCE = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, attempt_timeout=5.0)


def test_acknowledged_operations_survive_kill_9(meta_server, arun) -> None:
    address = meta_server.address
    acked: dict[str, set[int]] = {"mkdir": set(), "create": set(), "rename": set()}
    cut_off: list[int] = []  # workers whose operation the crash interrupted

    async def worker(c: Client, w: int, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            n = w * 1_000_000 + i
            i += 1
            try:
                await c.mkdir(f"/crash/d{n}")
                acked["mkdir"].add(n)
                await c.touch(f"/crash/f{n}", exist_ok=False)
                acked["create"].add(n)
                await c.rename(f"/crash/f{n}", f"/crash/r{n}")
                acked["rename"].add(n)
            except OSError:
                cut_off.append(w)  # the server is gone; whatever this op did is unknown
                return

    async def stream_then_crash() -> None:
        async with Client(address) as setup:
            await setup.mkdir("/crash")
        async with Client(address, retry=NO_PATIENCE) as c:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(worker(c, w, stop)) for w in range(WORKERS)]
            # Let the stream run until plenty is acknowledged, then crash mid-stream.
            while len(acked["rename"]) < 200:
                await asyncio.sleep(0.01)
                if all(t.done() for t in tasks):
                    raise AssertionError("workers stopped before the crash")
            meta_server.kill()
            stop.set()
            await asyncio.gather(*tasks)

    arun(stream_then_crash(), timeout=90)
    assert cut_off, "the crash did not interrupt any operation"
    assert meta_server.restart() == address  # same data dir, same port

    async def verify() -> None:
        async with Client(address) as c:
            names = set(await c.listdir("/crash"))
            for n in acked["mkdir"]:
                assert f"d{n}" in names, f"acknowledged mkdir d{n} lost"
                assert stat.S_ISDIR((await c.stat(f"/crash/d{n}")).st_mode)
            for n in acked["create"] - acked["rename"]:
                # The rename was cut off: it happened entirely or not at all.
                assert (f"f{n}" in names) != (f"r{n}" in names), f"f{n}/r{n} half-renamed"
            for n in acked["rename"]:
                assert f"r{n}" in names and f"f{n}" not in names, f"acknowledged rename of f{n} lost"
            for name in names:
                assert name[0] in "dfr"

    arun(verify())


def test_a_client_survives_a_restart(meta_server, arun) -> None:
    """The same Client keeps working across kill -9 + restart (its channel reconnects)."""
    address = meta_server.address

    async def body() -> None:
        async with Client(address) as c:
            await c.mkdir("/before")
            meta_server.kill()
            with pytest.raises(ConnectionError):
                await c.stat("/before")
            await asyncio.to_thread(meta_server.restart)
            assert stat.S_ISDIR((await c.stat("/before")).st_mode)
            await c.mkdir("/after")
            assert await c.listdir("/") == ["after", "before"]

    arun(body())
