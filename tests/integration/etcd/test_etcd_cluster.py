"""EtcdClient against a real three-member etcd: kill -9 of the leader (the client moves to
another member and its calls succeed again within seconds), a write that a leader without
quorum can never answer (OutcomeUnknown, not a plain Unavailable) and, once it has stepped
down, its fast "no leader" refusal (a plain Unavailable), and many threads
sharing one client (compare-and-swap increments add up exactly)."""

from __future__ import annotations

import threading
import time

import pytest

from emberfs.common.errors import Unavailable
from emberfs.metaserver.etcdkv.client import EtcdClient
from emberfs.metaserver.etcdkv.errors import OutcomeUnknown
from emberfs.metaserver.etcdkv.model import Compare, CompareOp, CompareTarget, Op
from emberfs.metaserver.etcdkv.launch import EtcdCluster

pytestmark = pytest.mark.faults  # members killed and frozen out of quorum

RESUME_BOUND_S = 10.0  # etcd's own election takes ~1-2 s with a 1 s election timeout


def test_kill_9_of_the_leader_the_next_calls_succeed_via_another_member(restored: EtcdCluster,
                                                                          keyspace: bytes) -> None:
    leader = restored.leader()
    # The leader first: the client is on the member that dies.
    order = [restored.endpoints[leader]] + [e for i, e in enumerate(restored.endpoints) if i != leader]
    with EtcdClient(order, timeout=2.0) as client:
        acknowledged = {keyspace + b"before": client.put(keyspace + b"before", b"x")}
        restored.kill(leader)
        killed_at = time.monotonic()
        failures: list[str] = []
        for attempt in range(100):  # bounded by count and by time
            if time.monotonic() - killed_at > RESUME_BOUND_S:
                break
            key = keyspace + b"after-%03d" % attempt
            try:
                acknowledged[key] = client.put(key, b"x")
                break
            except Unavailable as exc:  # includes OutcomeUnknown: not counted as acknowledged
                failures.append(type(exc).__name__)
        stall = time.monotonic() - killed_at
        print(f"\nleader kill -9: first write acknowledged after {stall:.2f} s, {len(failures)} failed tries "
              f"{failures[:5]}")
        assert len(acknowledged) == 2, f"no write succeeded within {RESUME_BOUND_S} s: {failures}"
        assert client.current_endpoint != restored.endpoints[leader]
        for _ in range(20):  # and it keeps working, reads and Txns included
            client.txn([], [Op.put(keyspace + b"steady", b"x")])
        for key, revision in acknowledged.items():
            kv = client.get(key)
            assert kv is not None and kv.mod_revision == revision
        assert restored.leader() != leader


def test_a_write_no_quorum_can_commit_is_outcome_unknown(restored: EtcdCluster, keyspace: bytes) -> None:
    leader = restored.leader()
    with EtcdClient([restored.endpoints[leader]], timeout=0.5) as client:
        client.put(keyspace + b"warm", b"x")
        for index in range(len(restored.members)):
            if index != leader:
                restored.kill(index)
        started = time.monotonic()
        try:
            client.put(keyspace + b"k", b"v")
            raise AssertionError("a write without quorum was acknowledged")
        except OutcomeUnknown as exc:  # sent to the leader, never answered
            assert "may have been applied" in str(exc)
        assert time.monotonic() - started < 2.0
        # Once the lone member has stepped down (etcd's check-quorum, one election
        # timeout), it refuses at once: "no leader" is a plain Unavailable, surely not
        # applied, because every request requires a leader (the `hasleader` metadata).
        for _ in range(100):
            if restored.client.status(restored.endpoints[leader]).leader == 0:
                break
            time.sleep(0.1)
        started = time.monotonic()
        try:
            client.put(keyspace + b"k2", b"v")
            raise AssertionError("a write without a leader was acknowledged")
        except Unavailable as exc:
            assert not isinstance(exc, OutcomeUnknown) and "no leader" in str(exc)
        assert time.monotonic() - started < 1.0


def test_threads_share_one_client(etcd3: EtcdCluster, client3: EtcdClient, keyspace: bytes) -> None:
    """8 threads each add 1 to one counter 25 times by compare-and-swap on its mod
    revision; a lost update or a thread-safety bug shows as a wrong total."""
    counter = keyspace + b"counter"
    client3.put(counter, b"0")
    threads, increments = 8, 25
    conflicts = [0] * threads
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            for _ in range(increments):
                for _ in range(1000):  # bounded retries on conflict
                    kv = client3.get(counter)
                    assert kv is not None
                    swap = client3.txn([Compare(counter, CompareTarget.MOD, CompareOp.EQUAL, kv.mod_revision)],
                                       [Op.put(counter, str(int(kv.value) + 1).encode())])
                    if swap.succeeded:
                        break
                    conflicts[slot] += 1
                else:
                    raise AssertionError("1000 conflicts in a row")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not errors, errors
    assert not any(w.is_alive() for w in workers)
    final = client3.get(counter)
    assert final is not None and int(final.value) == threads * increments
    assert final.version == threads * increments + 1
    print(f"\n{threads} threads x {increments} CAS increments: {sum(conflicts)} conflicts retried")
