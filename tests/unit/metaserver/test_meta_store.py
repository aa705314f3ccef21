"""MetaStore: group commit with per-op rollback, durability, map growth, close."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from emberfs.common import errors as e
from emberfs.common.paths import split_path
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.ops.create import create
from emberfs.metaserver.ops.mkdir import mkdir
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.store import MetaStore
from emberfs.metaserver.txn import ROOT_ID, MetaTxn
from emberfs.proto import meta_pb2


def test_root_is_created_once(config: MetaConfig) -> None:
    with MetaStore(config) as store:
        root = store.read(lambda tx: tx.inode(ROOT_ID))
        assert (root.type, root.mode, root.uid, root.gid, root.nlink, root.parent_id) == (
            meta_pb2.DIRECTORY, 0o755, 0, 0, 2, ROOT_ID)
        assert (root.layout.chunk_size, root.layout.stripe) == (config.default_chunk_size, config.default_stripe)
        store.write_sync(lambda tx: mkdir(tx, ROOT, ["d"], mode=0o700))
    with MetaStore(config) as store:
        assert store.read(lambda tx: tx.inode(ROOT_ID)).nlink == 3
        assert store.read(lambda tx: tx.lookup(ROOT_ID, "d")) is not None


def test_group_commit_failures_roll_back_only_themselves(config: MetaConfig) -> None:
    def op(i: int) -> Any:
        def run(tx: MetaTxn) -> int:
            reply = create(tx, ROOT, [f"f{i}"], mode=0o644)
            if i % 7 == 0:  # fail *after* writing: the child txn must undo the create
                raise e.InvalidArgument(f"op {i} refuses")
            if i % 11 == 0:
                raise RuntimeError(f"op {i} has a bug")
            return reply.inode.inode_id
        return run

    async def main(store: MetaStore) -> list[Any]:
        return await asyncio.gather(*(store.write(op(i)) for i in range(200)), return_exceptions=True)

    with MetaStore(config) as store:
        results = asyncio.run(main(store))
        batches = store.stats["batches"]
    failed = {i for i in range(200) if i % 7 == 0 or i % 11 == 0}
    for i, result in enumerate(results):
        if i % 7 == 0:
            assert isinstance(result, e.InvalidArgument)
        elif i % 11 == 0:
            assert isinstance(result, RuntimeError)
        else:
            assert isinstance(result, int)
    assert batches < 200  # concurrent writes shared commits
    with MetaStore(config) as store:  # everything acknowledged is on disk
        names = store.read(lambda tx: [entry.name for entry in tx.entries(ROOT_ID)])
        assert sorted(names) == sorted(f"f{i}" for i in range(200) if i not in failed)
        assert store.read(lambda tx: tx.counter(b"files")) == 200 - len(failed)


def test_a_write_can_return_anything_and_errors_propagate(store: MetaStore) -> None:
    assert store.write_sync(lambda tx: 42) == 42
    with pytest.raises(ZeroDivisionError):
        store.write_sync(lambda tx: 1 / 0)
    assert store.write_sync(lambda tx: tx.counter(b"files")) == 0


def test_map_grows_on_demand(tmp_path: Any) -> None:
    config = MetaConfig(data_dir=str(tmp_path / "m"), map_size=128 * 1024)
    stop = threading.Event()
    reads = [0]

    def reader(store: MetaStore) -> None:  # reads keep going while the writer resizes
        while not stop.is_set():
            store.read(lambda tx: tx.inode(ROOT_ID))
            reads[0] += 1

    async def fill(store: MetaStore) -> None:
        for start in range(0, 4000, 400):
            await asyncio.gather(
                *(store.write(lambda tx, i=i: create(tx, ROOT, [f"file-{i:06d}"], mode=0o644))
                  for i in range(start, start + 400))
            )

    with MetaStore(config) as store:
        thread = threading.Thread(target=reader, args=(store,))
        thread.start()
        try:
            asyncio.run(fill(store))
        finally:
            stop.set()
            thread.join()
        assert store.stats["map_grows"] >= 2 and store.map_size > config.map_size
        assert reads[0] > 0
    with MetaStore(config) as store:
        assert store.read(lambda tx: len(list(tx.entries(ROOT_ID)))) == 4000


def test_map_growth_is_capped_with_nospace(tmp_path: Any) -> None:
    config = MetaConfig(data_dir=str(tmp_path / "m"), map_size=256 * 1024, max_map_size=512 * 1024)
    with MetaStore(config) as store:
        def huge(tx: MetaTxn) -> None:
            for i in range(2000):
                tx.put_entry(99, f"n{i}", i, 1)
                tx.kv.put("gc", f"pad{i}".encode(), b"x" * 1000)

        with pytest.raises(e.NoSpace):
            store.write_sync(huge)
        assert store.write_sync(lambda tx: mkdir(tx, ROOT, ["still-works"], mode=0o755)).inode.inode_id

        # In one batch with others, only the op that cannot fit fails.
        gate, started = threading.Event(), threading.Event()
        blocker = store._submit(lambda tx: (started.set(), gate.wait(5)))
        assert started.wait(5)  # the writer is busy: what follows queues up as one batch
        jobs = [store._submit(lambda tx, i=i: mkdir(tx, ROOT, [f"s{i}"], mode=0o755)) for i in range(3)]
        jobs.insert(1, store._submit(huge))
        batches = store.stats["batches"]
        gate.set()
        blocker.result()
        assert isinstance(jobs[1].exception(), e.NoSpace)
        assert all(isinstance(job.result(), meta_pb2.MkdirResponse) for job in jobs if job is not jobs[1])
        assert store.stats["batches"] == batches + 2  # the blocker's batch, then one for the rest


def test_close_drains_queued_writes_then_refuses(config: MetaConfig) -> None:
    store = MetaStore(config)
    futures = [store._submit(lambda tx, i=i: create(tx, ROOT, [f"q{i}"], mode=0o600)) for i in range(50)]
    store.close()
    assert all(f.result().created for f in futures)
    with pytest.raises(e.Unavailable):
        store.write_sync(lambda tx: None)
    with pytest.raises(e.Unavailable):
        store.read(lambda tx: None)
    store.close()  # twice is fine
    with MetaStore(config) as reopened:
        assert reopened.read(lambda tx: tx.counter(b"files")) == 50


def test_cancelled_write_that_has_not_started_never_runs(config: MetaConfig) -> None:
    """The LMDB writer's queue: a write cancelled while queued behind a batch never runs."""
    with MetaStore(config) as store:
        _cancelled_while_queued(store)


def _cancelled_while_queued(store: MetaStore) -> None:
    gate = threading.Event()
    ran = []

    async def main() -> None:
        blocker = asyncio.ensure_future(store.write(lambda tx: gate.wait(5)))
        await asyncio.sleep(0.05)  # the writer is now stuck in the blocker's batch
        doomed = asyncio.ensure_future(store.write(lambda tx: ran.append(1)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.sleep(0.01)  # let the cancellation reach the queued job
        gate.set()
        await blocker
        with pytest.raises(asyncio.CancelledError):
            await doomed

    asyncio.run(main())
    store.write_sync(lambda tx: None)
    assert ran == []


def test_acknowledged_writes_survive_kill_9(config: MetaConfig) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from emberfs.metaserver.config import MetaConfig
        from emberfs.metaserver.store import MetaStore
        from emberfs.metaserver.ops.mkdir import mkdir
        from emberfs.metaserver.ops.perm import ROOT
        store = MetaStore(MetaConfig(data_dir={config.data_dir!r}))
        for i in range(20):
            store.write_sync(lambda tx: mkdir(tx, ROOT, ["d%d" % i], mode=0o755))
            print(i, flush=True)
        sys.stdin.read()  # wait to be killed, store still open
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        acked = [proc.stdout.readline() for _ in range(20)]  # type: ignore[union-attr]
        assert acked[-1].strip() == "19"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with MetaStore(config) as store:
        names = store.read(lambda tx: {entry.name for entry in tx.entries(ROOT_ID)})
    assert names == {f"d{i}" for i in range(20)}


def test_reads_see_only_committed_state(store: MetaStore) -> None:
    store.write_sync(lambda tx: mkdir(tx, ROOT, split_path("/a"), mode=0o755))
    assert store.read(lambda tx: tx.lookup(ROOT_ID, "a")) is not None
    assert dataclasses.is_dataclass(store.config)


def test_a_data_dir_serves_one_store_at_a_time(config: MetaConfig) -> None:
    with MetaStore(config), pytest.raises(BlockingIOError):
        MetaStore(config)
    with MetaStore(config):  # released on close
        pass
