"""BulkPool's connection opens outlive the callers that gave up on them (a frozen peer)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from emberfs.common import bulkclient
from emberfs.common.errors import Unavailable


async def _silent_peer() -> tuple[asyncio.base_events.Server, str]:
    """A listener that accepts and never says a word: a storage server under SIGSTOP (the
    kernel still completes the handshake)."""
    held: list[Any] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


def test_an_open_abandoned_by_its_caller_fails_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's timeout ends before the open's own: the open then fails on its own
    (no greeting) with nobody awaiting it. That failure must not reach the loop's
    exception handler ("Task exception was never retrieved": an ERROR in a storage
    server's log, where forwards to a frozen successor give up this way); the next caller
    opens anew and gets its own answer."""
    monkeypatch.setattr(bulkclient, "CONNECT_TIMEOUT_S", 0.3)
    reported: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
        server, address = await _silent_peer()
        pool = bulkclient.BulkPool()
        try:
            with pytest.raises(Unavailable, match="timed out"):
                await pool.call(address, "Read", None, timeout=0.05)
            await asyncio.sleep(0.6)  # the open times out waiting for the greeting, unobserved
            gc.collect()
            assert not pool._connecting
            with pytest.raises(Unavailable, match="cannot open the bulk channel"):
                await pool.call(address, "Read", None, timeout=1.0)
        finally:
            await pool.close()
            server.close()

    asyncio.run(main())
    assert reported == []
