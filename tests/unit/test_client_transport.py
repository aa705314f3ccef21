"""The client's transport against a scripted in-process gRPC server (real gRPC, fake logic).

What is checked here is the client's side of the contract: headers, the same request id
on every retry, no retry of a final answer, a deadline per attempt, validation before
any traffic, umask, paging, and errors arriving as the OSError family with the path.
"""

import asyncio
import errno

import grpc
import pytest

from emberfs.client import Client, ClientState, RetryPolicy
from emberfs.common import errors as e
from emberfs.proto import meta_pb2, meta_pb2_grpc

pytestmark = pytest.mark.timeout(30)

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02, attempt_timeout=0.5)


class Scripted(meta_pb2_grpc.MetaServicer):
    """Fails the first `failures` calls with `error`, then answers; records every request."""

    def __init__(self, failures: int = 0, error: e.EmberError | None = None, hang: float = 0.0) -> None:
        self.failures, self.error, self.hang = failures, error or e.Unavailable("down"), hang
        self.requests: list = []

    async def _maybe_fail(self, request, context) -> None:
        self.requests.append(request)
        if self.hang:
            await asyncio.sleep(self.hang)
        if len(self.requests) <= self.failures:
            context.set_trailing_metadata(((e.ERROR_METADATA_KEY, self.error.code),))
            await context.abort(self.error.grpc_status, self.error.message)

    async def Stat(self, request, context):
        await self._maybe_fail(request, context)
        return meta_pb2.StatResponse(inode=meta_pb2.Inode(inode_id=1, type=meta_pb2.DIRECTORY, mode=0o755, nlink=2))

    async def Create(self, request, context):
        await self._maybe_fail(request, context)
        return meta_pb2.CreateResponse(inode=meta_pb2.Inode(inode_id=2, type=meta_pb2.FILE), created=True)

    async def Mkdir(self, request, context):
        await self._maybe_fail(request, context)
        return meta_pb2.MkdirResponse(inode=meta_pb2.Inode(inode_id=3, type=meta_pb2.DIRECTORY))

    async def List(self, request, context):
        await self._maybe_fail(request, context)
        names = [f"n{i:03d}" for i in range(25)]
        rest = [n for n in names if n > request.start_after]
        page = rest[:10]
        return meta_pb2.ListResponse(
            entries=[meta_pb2.DirEntry(name=n, inode_id=10, type=meta_pb2.FILE) for n in page],
            more=len(rest) > len(page),
        )


async def _with_server(servicer, body):
    server = grpc.aio.server()
    meta_pb2_grpc.add_MetaServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with Client(f"127.0.0.1:{port}", uid=1000, gid=100, groups=[100, 7], retry=FAST, timeout=5) as c:
            return await body(c)
    finally:
        await server.stop(None)


def run(servicer, body):
    return asyncio.run(_with_server(servicer, body))


def test_header_identity_and_fresh_request_ids() -> None:
    s = Scripted()

    async def body(c):
        await c.stat("/")
        await c.stat("/")

    run(s, body)
    h1, h2 = s.requests[0].header, s.requests[1].header
    assert (h1.uid, h1.gid, list(h1.groups)) == (1000, 100, [100, 7])
    assert h1.client_id == h2.client_id and len(h1.client_id) == 32
    assert h2.request_id != h1.request_id


def test_retry_reuses_the_request_id() -> None:
    s = Scripted(failures=2)

    async def body(c):
        return await c.touch("/f")

    run(s, body)
    assert len(s.requests) == 3
    assert len({(r.header.client_id, r.header.request_id) for r in s.requests}) == 1


def test_final_answers_are_not_retried() -> None:
    s = Scripted(failures=1, error=e.NotFound("no such entry"))

    async def body(c):
        with pytest.raises(FileNotFoundError) as info:
            await c.stat("/missing")
        assert info.value.filename == "/missing" and info.value.errno == errno.ENOENT

    run(s, body)
    assert len(s.requests) == 1


def test_gives_up_after_max_attempts_as_connection_error() -> None:
    s = Scripted(failures=100)

    async def body(c):
        with pytest.raises(ConnectionError):
            await c.stat("/x")

    run(s, body)
    assert len(s.requests) == FAST.max_attempts


def test_slow_attempts_hit_the_deadline_and_are_retried() -> None:
    s = Scripted(hang=2.0)

    async def body(c):
        with pytest.raises(TimeoutError):
            await c.stat("/x")

    run(s, body)
    assert len(s.requests) == FAST.max_attempts


@pytest.mark.parametrize("path", ["relative", "/a//../b", "/a/./b", "/" + "x" * 256, "/nul\x00"])
def test_bad_paths_fail_before_any_traffic(path) -> None:
    s = Scripted()

    async def body(c):
        with pytest.raises(OSError) as info:
            await c.mkdir(path)
        assert info.value.errno in (errno.EINVAL, errno.ENAMETOOLONG) and info.value.filename == path

    run(s, body)
    assert s.requests == []


def test_bad_mode_fails_before_any_traffic() -> None:
    s = Scripted()

    async def body(c):
        with pytest.raises(OSError) as info:
            await c.mkdir("/d", mode=0o10000)
        assert info.value.errno == errno.EINVAL

    run(s, body)
    assert s.requests == []


def test_umask_is_applied_to_new_modes() -> None:
    s = Scripted()

    async def body(c):
        await c.mkdir("/d", 0o777)
        await c.touch("/f", 0o666)
        await c.mkdir("/s", 0o3777)  # setgid is not mkdir's to give; sticky is

    run(s, body)
    assert [r.mode for r in s.requests] == [0o755, 0o644, 0o1755]


def test_listdir_fetches_every_page() -> None:
    s = Scripted()

    async def body(c):
        return await c.listdir("/d")

    names = run(s, body)
    assert names == [f"n{i:03d}" for i in range(25)]
    assert [r.start_after for r in s.requests] == ["", "n009", "n019"]


def test_state_is_explicit() -> None:
    async def body():
        c = Client("127.0.0.1:1")
        assert c.state is ClientState.UNOPENED
        with pytest.raises(RuntimeError):
            await c.stat("/")
        async with c:
            assert c.state is ClientState.OPENED
        assert c.state is ClientState.CLOSED
        with pytest.raises(RuntimeError):
            await c.connect()

    asyncio.run(body())
