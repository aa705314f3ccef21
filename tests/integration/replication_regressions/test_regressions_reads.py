"""Regression tests: a read never returns a version older than one already returned,
and a commit in progress does not stop the server's event loop.

Each test reproduces one defect of the hostile review of issue 15 deterministically
and asserts only what a correct chain must give, whatever the implementation. The
in-process chain they run on is _chain3.py.

    4  reads go backwards when the tail fails
       test_read_never_goes_back_when_the_tail_fails
    7  a small cached read waits on the event loop for a commit
       test_commit_in_progress_does_not_stall_the_event_loop
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from emberfs.common.chainstate import PublicState
from emberfs.common.errors import from_rpc_error

from ._chain3 import (
    REPLACE,
    WRITE,
    HeldCall,
    Replica,
    assert_identical,
    chain3,
    chain_view,
    fill,
    outcome,
    run,
    summary,
)


# --- defect 4: reads go backwards when the tail fails --------------------------------


def test_read_never_goes_back_when_the_tail_fails(tmp_path: Path) -> None:
    """Write v2 reaches the tail, which commits it and serves it to a reader; the tail
    then fails before the middle hears its ack (the tail's commit is held right after
    it returned, then its server stops). The manager's new chain is head, middle (the
    middle is the tail now). A read at the middle must not return v1 after the old tail
    returned v2: it may fail retryably for a while, but whatever it returns is v2 or
    newer. A later write must then land on v2's bytes.

    Before the fix (issue 15): the new tail serves its committed v1 while it still holds
    v2 pending."""

    async def body() -> None:
        async with chain3(tmp_path) as c:
            v1, v2 = fill(b"1"), fill(b"2")
            await c.write_acked(c.update(REPLACE, v1))
            hold = c.hold(c.tail, "commit", at="after")
            inflight = asyncio.ensure_future(c.write(c.update(REPLACE, v2)))
            await hold.wait_entered()
            seen = await c.read(c.tail)
            assert (seen.commit_version, seen.data) == (2, v2), "the old tail did not serve v2"
            await c.tail.stop_serving()  # the tail fails: its ack never reaches the middle
            hold.release()
            await asyncio.wait([inflight], timeout=10.0)
            outcome(inflight)  # the write fails with its tail, or is acknowledged by a chain that took over
            c.routing.view = chain_view([c.head, c.middle, c.tail], 2, states={c.tail.target: PublicState.OFFLINE})
            answers = []
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                try:
                    reply = await c.read(c.middle)
                except grpc.aio.AioRpcError as exc:
                    error = from_rpc_error(exc)
                    assert error.retryable, f"the new tail refused a read: {error!r}"
                    answers.append(type(error).__name__)
                    await asyncio.sleep(0.05)
                    continue
                answers.append(summary(reply.commit_version, reply.data))
                assert reply.commit_version >= 2 and reply.data == v2, (
                    f"the old tail served v2, then the new tail served {answers[-1]} (answers: {answers})")
                break
            await c.write_acked(c.update(WRITE, b"3" * 10), attempts=30)
            reply = await c.read(c.middle)
            assert reply.data == b"3" * 10 + v2[10:], f"the new tail holds {summary(reply.commit_version, reply.data)}"
            assert_identical([c.head, c.middle])

    run(body)


# --- defect 7: a cached read waits for a commit on the event loop ---------------------


def test_commit_in_progress_does_not_stall_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head's commit of a write is held right after it renamed the new chunk file
    into place (a slow rename and directory fsync, as on a loaded disk), for 2 s. A small
    read of the same chunk at the head meanwhile (its bytes are in the page cache) must
    not stop the server's event loop: the loop keeps turning (every gap under 0.75 s, a
    bound a loaded CI machine keeps, far below the hold) while the commit is held.

    Before the fix (issue 15): the cached read runs on the event loop and waits there on
    the commit gate the held commit keeps closed, so the whole server stops for the
    hold."""

    async def body() -> None:
        async with chain3(tmp_path) as c:
            await c.write_acked(c.update(REPLACE, fill(b"1")))
            hold = _hold_inside_commit(c.head, monkeypatch)
            c.holds.append(hold)
            inflight = asyncio.ensure_future(c.write(c.update(WRITE, b"2" * 100)))
            await hold.wait_entered()
            timer = threading.Timer(2.0, hold.release)  # from a thread: the loop may be stuck
            timer.start()
            try:
                gaps = asyncio.ensure_future(_longest_loop_gap(2.5))
                await asyncio.sleep(0.05)
                reader = asyncio.ensure_future(c.read(c.head, length=4096))
                longest = await gaps
                reply = await reader
                await inflight
            finally:
                timer.cancel()
                hold.release()
            assert reply.data in (b"1" * 4096, b"2" * 100 + b"1" * 3996)
            assert longest < 0.75, f"the server's event loop stood still for {longest:.3f} s during a commit"

    run(body)


def _hold_inside_commit(replica: Replica, monkeypatch: pytest.MonkeyPatch) -> HeldCall:
    """Hold the replica's next commit inside it: right after the commit renamed the new
    chunk file into place (any copy-on-write commit renames one)."""
    store = replica.store
    assert store is not None
    held = HeldCall()
    inside = threading.local()
    original_commit, real_replace = store.commit, os.replace

    def commit(*args: Any, **kwargs: Any) -> Any:
        inside.active = True
        try:
            return original_commit(*args, **kwargs)
        finally:
            inside.active = False
            if held.entered.is_set():
                held.finished.set()

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_replace(src, dst, *args, **kwargs)
        if getattr(inside, "active", False) and not held.entered.is_set():
            held.hold_here()

    store.commit = commit  # type: ignore[method-assign]
    monkeypatch.setattr(os, "replace", replace)
    return held


async def _longest_loop_gap(seconds: float, step: float = 0.005) -> float:
    last = time.monotonic()
    end, longest = last + seconds, 0.0
    while last < end:
        await asyncio.sleep(step)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest
