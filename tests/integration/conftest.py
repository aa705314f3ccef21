"""Fixtures that run real EmberFS processes on 127.0.0.1 (no mocks).

    meta_server   a metaserver of its own for one test (kill -9, restart: `.kill()`,
                  `.restart()` on the same data dir and port)
    shared_meta   one metaserver per test module, for tests that only need a namespace
    workdir       a fresh directory on shared_meta for one test, made by root
    arun          run a coroutine to completion under a time bound

Every process is stopped at teardown (SIGTERM, SIGKILL after a bound), whether the
test passed or not; a server that fails to start shows the tail of its log.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from emberfs.client import Client
from emberfs.client._launch import ServerProcess, metaserver_process

T = TypeVar("T")

START_TIMEOUT_S = 20.0
STOP_GRACE_S = 10.0


def _started(data_dir: Path) -> Iterator[ServerProcess]:
    proc = metaserver_process(data_dir)
    proc.start(timeout=START_TIMEOUT_S)
    try:
        yield proc
    finally:
        code = proc.stop(grace=STOP_GRACE_S)
        # A clean SIGTERM exit is part of the server's contract; kill -9 tests restart
        # it, so by teardown it should be a process we can stop cleanly.
        if code not in (0, None):
            print(f"metaserver exited with {code}; log tail:\n{proc.log_tail()}")


@pytest.fixture
def meta_server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from _started(tmp_path / "meta")


@pytest.fixture(scope="module")
def shared_meta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _started(tmp_path_factory.mktemp("shared") / "meta")


def run_async(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture
def arun() -> Callable[..., Any]:
    return run_async


@pytest.fixture
def workdir(shared_meta: ServerProcess) -> str:
    """A fresh world-writable (sticky, like /tmp) directory on the shared server."""
    path = f"/t-{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        async with Client(shared_meta.address, uid=0, gid=0, groups=[]) as root:
            await root.mkdir(path)
            await root.chmod(path, 0o1777)

    run_async(make())
    return path
