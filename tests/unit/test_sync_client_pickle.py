"""SyncClient without a cluster: pickling carries only the address and the options,
options fail at construction, the API matches Client's and EmberFile's, the lifecycle
(lazy start, idempotent close) and the fork hook that stops a running client.

An address nobody listens on lets a call start the loop thread and the channels and
fail in bounded time, so "started" states are reachable without a server."""

from __future__ import annotations

import inspect
import os
import pickle
import pickletools
import socket
import threading

import pytest

from emberfs.client import Client, EmberFile, RetryPolicy, SyncClient, SyncFile

OPTIONS = dict(
    uid=5,
    gid=6,
    groups=[7, 8],
    umask=0o027,
    timeout=2.5,
    retry=RetryPolicy(max_attempts=2),
    verify_crc=False,
    max_inflight=4,
    per_server_inflight=2,
    readahead=0,
)


def _dead_address() -> str:
    """A loopback port that nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("emberfs-sync")]


def _started(address: str) -> SyncClient:
    """A SyncClient whose loop thread and Client exist: one call failed on a dead port."""
    client = SyncClient(address, timeout=1.0, retry=RetryPolicy(max_attempts=1))
    with pytest.raises((ConnectionError, TimeoutError)):
        client.stat("/")
    assert "running" in repr(client)
    return client


def test_pickle_carries_the_address_and_options_only() -> None:
    client = SyncClient("127.0.0.1:9", **OPTIONS)  # type: ignore[arg-type]
    payload = pickle.dumps(client)
    copy = pickle.loads(payload)
    assert isinstance(copy, SyncClient) and copy is not client
    assert copy.address == "127.0.0.1:9"
    assert copy._options == OPTIONS
    assert "unstarted" in repr(copy)
    # The payload names the rebuild hook and the options' own dataclass; no loop,
    # thread, lock or channel.
    strings = {arg for op, arg, _ in pickletools.genops(payload) if isinstance(arg, str)}
    assert {"emberfs.client._sync", "_unpickle", "emberfs.client._retry", "RetryPolicy"} <= strings
    assert not {s for s in strings if s.startswith(("asyncio", "threading", "grpc", "_thread"))}


def test_a_started_client_pickles_to_the_same_bytes_as_a_fresh_one() -> None:
    address = _dead_address()
    fresh = SyncClient(address, timeout=1.0, retry=RetryPolicy(max_attempts=1))
    started = _started(address)
    try:
        assert pickle.dumps(started) == pickle.dumps(fresh)
        copy = pickle.loads(pickle.dumps(started))
        assert "unstarted" in repr(copy)
    finally:
        started.close()


def test_unpickled_client_starts_lazily_and_makes_no_thread() -> None:
    before = len(_loop_threads())
    copy = pickle.loads(pickle.dumps(SyncClient(_dead_address(), timeout=1.0)))
    assert len(_loop_threads()) == before
    copy.close()
    assert len(_loop_threads()) == before


@pytest.mark.parametrize(
    "options, error",
    [
        ({"umask": 0o1000}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"readahead": -1}, ValueError),
        ({"no_such_option": 1}, TypeError),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        SyncClient("127.0.0.1:9", **options)  # type: ignore[arg-type]


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_every_client_method_has_a_blocking_twin_with_the_same_parameters() -> None:
    lifecycle = {"connect", "aclose"}  # SyncClient starts lazily and has close()
    client, sync = _public(Client), _public(SyncClient)
    missing = set(client) - lifecycle - set(sync)
    assert not missing, f"SyncClient lacks {sorted(missing)}"
    for name in set(client) - lifecycle:
        assert _shape(sync[name]) == _shape(client[name]), name


def test_every_file_method_has_a_blocking_twin() -> None:
    file, sync = _public(EmberFile), _public(SyncFile)
    assert set(file) <= set(sync), f"SyncFile lacks {sorted(set(file) - set(sync))}"
    for name in file:
        assert _shape(sync[name]) == _shape(file[name]), name
    for attribute in ("closed", "name", "mode"):
        assert isinstance(inspect.getattr_static(SyncFile, attribute), property)


def test_unreachable_cluster_raises_connection_or_timeout_error_in_bounded_time() -> None:
    client = _started(_dead_address())  # asserts the error type itself
    client.close()


def test_close_is_idempotent_final_and_ends_the_loop_thread() -> None:
    before = len(_loop_threads())
    with _started(_dead_address()) as client:
        assert len(_loop_threads()) == before + 1
    assert client.closed and len(_loop_threads()) == before
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.stat("/")


def test_calls_from_many_threads_share_one_loop_thread() -> None:
    client = SyncClient(_dead_address(), timeout=1.0, retry=RetryPolicy(max_attempts=1))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.exists("/x")
        except BaseException as exc:
            errors.append(exc)

    before = len(_loop_threads())
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 8 and all(isinstance(e, (ConnectionError, TimeoutError)) for e in errors)
    assert len(_loop_threads()) == before + 1
    client.close()


def test_fork_stops_a_running_client_first_and_the_parent_starts_again() -> None:
    client = _started(_dead_address())
    thread = _loop_threads()[-1]
    pid = os.fork()
    if pid == 0:  # the child: the runner was stopped before fork, nothing to inherit
        os._exit(0 if "unstarted" in repr(client) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "unstarted" in repr(client) and not thread.is_alive()
    with pytest.raises((ConnectionError, TimeoutError)):
        client.stat("/")  # the parent starts a new runner on its next call
    assert "running" in repr(client)
    client.close()
