"""The etcd engine's transaction rules (optimistic.py, etcdkv/store.py) over MemoryEtcd, a
model of etcd's revisions and Txn compares. The same engine against real etcd processes
runs in tests/integration/etcd/."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

from emberfs.common import errors as e
from emberfs.common.paths import split_path
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.etcdkv.optimistic import Compare, OptimisticKv
from emberfs.metaserver.etcdkv.store import EtcdStore
from emberfs.metaserver.ops import create, link, mkdir, remove, rename, stat
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.txn import FILES, ROOT_ID, MetaTxn
from emberfs.proto import meta_pb2


def kv(etcd: Any, marker: bytes = b"r/txn/1") -> OptimisticKv:
    return OptimisticKv(etcd, b"r/", marker)


_SEEDS = itertools.count()


def seed(etcd: Any, **items: bytes) -> None:
    """Commit table 't' keys (name -> value) as one revision."""
    tx = kv(etcd, b"r/txn/seed%d" % next(_SEEDS))
    for key, value in items.items():
        tx.put("t", key.encode(), value)
    plan = tx.commit_plan(1000)
    assert plan is not None and etcd.commit(plan.compares, plan.ops)


def commit(tx: OptimisticKv, etcd: Any) -> bool:
    plan = tx.commit_plan(1000)
    assert plan is not None
    return bool(etcd.commit(plan.compares, plan.ops))


def test_reads_see_own_writes_and_scans_overlay_them(memory_etcd: Any) -> None:
    etcd = memory_etcd()
    seed(etcd, a=b"1", b=b"2", c=b"3")
    tx = kv(etcd)
    tx.delete("t", b"b")
    tx.put("t", b"bb", b"22")
    tx.put("t", b"d", b"4")
    tx.put("t", b"a", b"11")
    assert tx.get("t", b"b") is None and tx.get("t", b"a") == b"11"
    assert list(tx.scan("t")) == [(b"a", b"11"), (b"bb", b"22"), (b"c", b"3"), (b"d", b"4")]
    assert list(tx.scan("t", b"b", b"c")) == [(b"bb", b"22")]
    assert list(tx.scan("t", limit=2)) == [(b"a", b"11"), (b"bb", b"22")]
    assert commit(tx, etcd)
    assert list(kv(etcd).scan("t")) == [(b"a", b"11"), (b"bb", b"22"), (b"c", b"3"), (b"d", b"4")]


def test_a_scan_stopped_early_depends_only_on_what_it_saw(memory_etcd: Any) -> None:
    etcd = memory_etcd()
    seed(etcd, a=b"1", m=b"2")
    tx = kv(etcd)
    assert next(tx.scan("t")) == (b"a", b"1")  # e.g. "is this directory empty?": no
    tx.put("t", b"x", b"decided")
    seed(etcd, z=b"after")  # past what the scan consumed: no conflict
    assert commit(tx, etcd)
    tx = kv(etcd, b"r/txn/2")
    assert next(tx.scan("t")) == (b"a", b"1")
    tx.put("t", b"x", b"again")
    seed(etcd, **{"0": b"inside"})  # before "a", inside what it consumed: conflict
    assert not commit(tx, etcd)


@pytest.mark.parametrize("meanwhile", [
    {"k": b"changed"},  # a key read was rewritten
    {"new": b"inserted"},  # an empty range scanned got a key
])
def test_what_a_transaction_read_decides_its_commit(memory_etcd: Any, meanwhile: dict[str, bytes]) -> None:
    etcd = memory_etcd()
    seed(etcd, k=b"v")
    tx = kv(etcd)
    assert tx.get("t", b"k") == b"v"
    assert list(tx.scan("t", b"n", b"o")) == []
    tx.put("t", b"out", b"x")
    seed(etcd, **meanwhile)
    assert not commit(tx, etcd)


def test_a_deleted_key_that_a_scan_returned_fails_the_commit(memory_etcd: Any) -> None:
    etcd = memory_etcd()
    seed(etcd, a=b"1", b=b"2")
    tx = kv(etcd)
    assert [k for k, _ in tx.scan("t")] == [b"a", b"b"]
    tx.put("t", b"summary", b"2 keys")
    other = kv(etcd, b"r/txn/2")
    other.delete("t", b"b")
    assert commit(other, etcd)
    assert not commit(tx, etcd)


def test_counter_adds_are_blind_and_do_not_conflict(memory_etcd: Any) -> None:
    etcd = memory_etcd()
    first, second = kv(etcd, b"r/txn/1"), kv(etcd, b"r/txn/2")
    for tx in (first, second):
        assert tx.total("c", b"files") == 0
    first.add("c", b"files", 3)
    second.add("c", b"files", -1)
    first.put("t", b"f1", b"")
    second.put("t", b"f2", b"")
    # Each read the counter (a scan) before the other's add: only total() depends on it, and
    # an op that adds never reads it; here the reads are dropped to model that.
    first.scans.clear(), second.scans.clear()
    assert commit(first, etcd) and commit(second, etcd)
    assert kv(etcd, b"r/txn/3").total("c", b"files") == 2


def test_an_operation_over_etcds_txn_limit_is_refused_plainly(memory_etcd: Any) -> None:
    tx = kv(memory_etcd())
    for i in range(10):
        tx.put("t", b"k%d" % i, b"")
    with pytest.raises(e.FailedPrecondition, match="--max-txn-ops"):
        tx.commit_plan(8)
    assert tx.commit_plan(11) is not None


def test_the_commit_plan_compares_reads_scans_and_the_marker(memory_etcd: Any) -> None:
    etcd = memory_etcd()
    seed(etcd, k=b"v")
    tx = kv(etcd, b"r/txn/9")
    tx.get("t", b"k")
    tx.get("t", b"absent")
    list(tx.scan("t", b"p", b"q"))
    tx.put("t", b"w", b"1")
    plan = tx.commit_plan(100)
    assert plan is not None
    assert Compare(b"r/txn/9", "version", "equal", 0) in plan.compares
    assert Compare(b"r/t/absent", "mod", "equal", 0) in plan.compares
    assert Compare(b"r/t/p", "mod", "less", tx.revision + 1, b"r/t/q") in plan.compares
    assert [type(op).__name__ for op in plan.ops] == ["Put", "Put"]  # the write and the marker


# -- the store: conflicts, unknown outcomes ---------------------------------------------------


@pytest.fixture
def config(tmp_path: Any) -> MetaConfig:
    return MetaConfig(data_dir=str(tmp_path / "meta"))


def test_racing_creates_in_one_directory_all_land(memory_etcd: Any, config: MetaConfig) -> None:
    """Creates of distinct names conflict only through the directory they share (its
    mtime): they retry and all land, each once; the file counter sums them."""
    etcd = memory_etcd()
    with EtcdStore(config, etcd, max_ops=1000, threads=8) as store:
        store.write_sync(lambda tx: mkdir.mkdir(tx, ROOT, split_path("/d"), mode=0o755))
        etcd.delay = 0.001

        def make(i: int) -> None:
            store.write_sync(lambda tx: create.create(tx, ROOT, split_path(f"/d/f{i}"), mode=0o644,
                                                      exclusive=True))

        threads = [threading.Thread(target=make, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        names = store.read(lambda tx: sorted(entry.name for entry in tx.entries(
            tx.lookup(ROOT_ID, "d").child_id)))  # type: ignore[union-attr]
        assert names == sorted(f"f{i}" for i in range(24))
        assert store.read(lambda tx: tx.counter(FILES)) == 24
        ids = store.read(lambda tx: [tx.lookup(tx.lookup(ROOT_ID, "d").child_id, n).child_id  # type: ignore[union-attr]
                                     for n in names])
        assert len(set(ids)) == 24 and ROOT_ID not in ids
        assert store.stats["conflicts"] > 0  # the race happened


def test_create_against_rmdir_is_serializable(memory_etcd: Any, config: MetaConfig) -> None:
    """rmdir found the directory empty, a create put a file in it: one of them must lose.
    Never a removed directory holding a file."""
    etcd = memory_etcd()
    with EtcdStore(config, etcd, max_ops=1000) as store:
        store.write_sync(lambda tx: mkdir.mkdir(tx, ROOT, split_path("/d"), mode=0o755))
        # rmdir runs first on its snapshot; the create commits in between (a nested write).
        created = []

        def rmdir(tx: MetaTxn) -> Any:
            out = remove.remove(tx, ROOT, split_path("/d"), kind=meta_pb2.DIRECTORY)
            if not created:
                created.append(store.write_sync(lambda t: create.create(t, ROOT, split_path("/d/f"), mode=0o644)))
            return out

        with pytest.raises(e.DirectoryNotEmpty):
            store.write_sync(rmdir)  # first attempt conflicts; the rerun sees the file
        assert store.read(lambda tx: tx.lookup(ROOT_ID, "d")) is not None


@pytest.mark.parametrize("lose", ["before", "after"])
def test_an_unknown_outcome_is_decided_by_the_marker(memory_etcd: Any, config: MetaConfig, lose: str) -> None:
    """The Txn's answer is lost: before it applied (the marker fence wins, the op runs
    again) or after (the marker says committed, the op's result stands). Either way the
    create happens exactly once and its caller gets its reply."""
    etcd = memory_etcd()
    with EtcdStore(config, etcd, max_ops=1000) as store:
        store.write_sync(lambda tx: create.create(tx, ROOT, split_path("/first"), mode=0o644))  # takes an id batch
        etcd.lose = lose
        reply = store.write_sync(lambda tx: create.create(tx, ROOT, split_path("/f"), mode=0o644, exclusive=True))
        assert reply.inode.inode_id > ROOT_ID
        assert store.read(lambda tx: tx.lookup(ROOT_ID, "f")).child_id == reply.inode.inode_id  # type: ignore[union-attr]
        assert store.read(lambda tx: tx.counter(FILES)) == 2
        assert store.stats["unknown"] == 1


def test_housekeeping_folds_counters_and_prunes_markers(memory_etcd: Any, config: MetaConfig) -> None:
    etcd = memory_etcd()
    now = [10**18]
    with EtcdStore(config, etcd, max_ops=1000, clock=lambda: now[0]) as store:
        for i in range(5):
            store.write_sync(lambda tx, i=i: create.create(tx, ROOT, split_path(f"/f{i}"), mode=0o644))
        now[0] += 3600 * 10**9
        store.housekeep()
        assert store.read(lambda tx: tx.counter(FILES)) == 5
        deltas = [k for k in etcd.history if k.startswith(b"emberfs/counters/files\x00")
                  and etcd._at(k, etcd.revision)[1] is not None]
        markers = [k for k in etcd.history if k.startswith(b"emberfs/txn/") and etcd._at(k, etcd.revision)[1]]
        assert deltas == [] and markers == []


def test_a_snapshot_compacted_away_runs_the_operation_again(memory_etcd: Any, config: MetaConfig) -> None:
    etcd = memory_etcd()
    with EtcdStore(config, etcd, max_ops=1000) as store:
        attempts = []

        def op(tx: MetaTxn) -> Any:
            attempts.append(tx.get_inode(ROOT_ID))  # the snapshot is taken here
            if len(attempts) == 1:
                store.write_sync(lambda t: mkdir.mkdir(t, ROOT, split_path("/other"), mode=0o755))
                etcd.compacted = etcd.revision  # etcd compacts past the snapshot
            return mkdir.mkdir(tx, ROOT, split_path("/mine"), mode=0o755)

        store.write_sync(op)
        assert len(attempts) == 2 and store.stats["conflicts"] == 1
        assert store.read(lambda tx: sorted(entry.name for entry in tx.entries(ROOT_ID))) == ["mine", "other"]


def test_a_key_read_twice_costs_one_read(memory_etcd: Any) -> None:
    """The snapshot never changes, so a transaction asks etcd for a key once: a scan's
    keys and a get's key are answered again from what was read (a remove looks an
    entry up, then deletes it)."""
    etcd = memory_etcd()
    seed(etcd, a=b"1", b=b"2")
    tx = kv(etcd)
    calls = []
    real = etcd.range
    etcd.range = lambda *args: calls.append(args) or real(*args)  # type: ignore[method-assign]
    assert [k for k, _ in tx.scan("t")] == [b"a", b"b"]
    assert tx.get("t", b"a") == b"1" and tx.get("t", b"zz") is None and tx.get("t", b"zz") is None
    assert tx.delete("t", b"b") and tx.get("t", b"b") is None
    assert len(calls) == 2  # the scan and the first get of the absent key


def test_a_path_walk_costs_one_round_trip_per_step(memory_etcd: Any, config: MetaConfig) -> None:
    """Each step of a walk fetches the directory's inode and the next entry together:
    a stat of /a/b/c is 4 round trips (root+a, a+b, b+c, c), not 7."""
    etcd = memory_etcd()
    with EtcdStore(config, etcd, max_ops=1000) as store:
        store.write_sync(lambda tx: mkdir.mkdir(tx, ROOT, ["a", "b", "c"], mode=0o755, parents=True))
        calls: list[str] = []
        real_range, real_many = etcd.range, etcd.get_many
        etcd.range = lambda *a: calls.append("range") or real_range(*a)  # type: ignore[method-assign]
        etcd.get_many = lambda *a: calls.append("many") or real_many(*a)  # type: ignore[method-assign]
        found = store.read(lambda tx: stat.stat(tx, ROOT, ["a", "b", "c"], follow_symlinks=True))
        assert found.inode.type == meta_pb2.DIRECTORY
        assert calls == ["many", "many", "many", "range"]


def test_prefetched_keys_are_in_the_read_set(memory_etcd: Any) -> None:
    """A key fetched ahead counts as read: a change to it fails the commit."""
    etcd = memory_etcd()
    seed(etcd, a=b"1", b=b"2")
    tx = kv(etcd)
    tx.prefetch([("t", b"a"), ("t", b"b"), ("t", b"none")])
    assert tx.get("t", b"b") == b"2" and tx.get("t", b"none") is None
    tx.put("t", b"c", b"3")
    seed(etcd, b=b"changed")
    assert not commit(tx, etcd)
    tx = kv(etcd, b"r/txn/2")
    tx.prefetch([("t", b"none")])  # one key: left to its get (same cost)
    assert tx.reads == {}


def test_renames_that_would_make_a_cycle_together_end_in_one_serial_order(memory_etcd: Any,
                                                                           config: MetaConfig) -> None:
    """rename /x/d -> /y/d racing rename /y -> /x/d/y: in either serial order the second
    finds its path gone. Each alone is legal; both applied would put d inside y inside d,
    a cycle cut off from the root. The first, with the second committed between its reads
    and its commit, must run again and fail."""
    etcd = memory_etcd()
    with EtcdStore(config, etcd, max_ops=1000) as store:
        store.write_sync(lambda tx: mkdir.mkdir(tx, ROOT, split_path("/x/d"), mode=0o755, parents=True))
        store.write_sync(lambda tx: mkdir.mkdir(tx, ROOT, split_path("/y"), mode=0o755))
        done = []

        def first(tx: MetaTxn) -> Any:
            out = rename.rename(tx, ROOT, split_path("/x/d"), split_path("/y/d"))
            if not done:
                done.append(store.write_sync(lambda t: rename.rename(t, ROOT, split_path("/y"), split_path("/x/d/y"))))
            return out

        with pytest.raises(e.NotFound):
            store.write_sync(first)
        # The second's effect alone: /x/d/y exists, /y does not, nothing is cut off.
        assert store.read(lambda tx: tx.lookup(ROOT_ID, "y")) is None
        d = store.read(lambda tx: tx.lookup(tx.lookup(ROOT_ID, "x").child_id, "d"))  # type: ignore[union-attr]
        assert d is not None
        assert store.read(lambda tx: tx.lookup(d.child_id, "y")) is not None


def test_link_racing_unlink_keeps_the_inode_exactly_when_the_link_landed(memory_etcd: Any,
                                                                         config: MetaConfig) -> None:
    """unlink /f racing link /f -> /g. The unlink read nlink 1 (it would free the inode);
    the link committed meanwhile (nlink 2, /g). The unlink must run again on the new
    state and leave the inode alive under /g with nlink 1, never /g naming a freed inode."""
    etcd = memory_etcd()
    with EtcdStore(config, etcd, max_ops=1000) as store:
        made = store.write_sync(lambda tx: create.create(tx, ROOT, split_path("/f"), mode=0o644))
        linked = []

        def unlink(tx: MetaTxn) -> Any:
            out = remove.remove(tx, ROOT, split_path("/f"), kind=meta_pb2.NON_DIRECTORY)
            if not linked:
                linked.append(store.write_sync(lambda t: link.link(t, ROOT, split_path("/f"), split_path("/g"))))
            return out

        store.write_sync(unlink)
        assert store.read(lambda tx: tx.lookup(ROOT_ID, "f")) is None
        entry = store.read(lambda tx: tx.lookup(ROOT_ID, "g"))
        assert entry is not None and entry.child_id == made.inode.inode_id
        inode = store.read(lambda tx: tx.get_inode(made.inode.inode_id))
        assert inode is not None and inode.nlink == 1
        assert store.read(lambda tx: list(tx.gc_records())) == []  # nothing queued to free


def test_a_create_reads_the_chain_set_with_the_walks_first_round_trip(memory_etcd: Any, config: MetaConfig) -> None:
    """The chain set's version (what a create checks its chains against) comes in the
    walk's first batch: a create of /d/f is 3 reads (root + d + chain set, d's inode,
    the entry f), not 4."""
    from emberfs.metaserver.mgmt.allocator import TableChains

    etcd = memory_etcd()
    with EtcdStore(config, etcd, max_ops=1000, allocator=TableChains()) as store:
        store.write_sync(lambda tx: mkdir.mkdir(tx, ROOT, split_path("/d"), mode=0o755))
        calls: list[tuple[str, Any]] = []
        real_range, real_many = etcd.range, etcd.get_many
        etcd.range = lambda *a: calls.append(("range", a[0])) or real_range(*a)  # type: ignore[method-assign]
        etcd.get_many = lambda *a: calls.append(("many", list(a[0]))) or real_many(*a)  # type: ignore[method-assign]
        store.write_sync(lambda tx: create.create(tx, ROOT, split_path("/d/f"), mode=0o644, exclusive=True))
        # (the inode id comes from the batch the mkdir took: no read of its own)
        assert [kind for kind, _ in calls] == ["many", "range", "range"]
        assert any(key.endswith(b"version_of_chain_set") for key in calls[0][1])
