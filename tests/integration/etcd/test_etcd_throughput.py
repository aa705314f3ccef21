"""Durable compare-and-put Txns per second on the three-member etcd (fsync on), one thread
and 16 threads sharing one client: the figure the etcd engine's namespace rate is bound
by. Short (2 s a row); prints the rates. Each Txn creates a fresh key only if absent, as
a mkdir's commit does, and every one must succeed."""

from __future__ import annotations

import threading
import time

import pytest

from emberfs.metaserver.etcdkv.client import EtcdClient
from emberfs.metaserver.etcdkv.model import Compare, CompareOp, CompareTarget, Op
from emberfs.metaserver.etcdkv.launch import EtcdCluster

SECONDS = 2.0
MAX_TXNS_PER_THREAD = 20_000  # a bound on the loop, far above what 2 s allows


def _rate(client: EtcdClient, keyspace: bytes, threads: int) -> float:
    done = [0] * threads
    failed: list[BaseException] = []
    stop_at = time.monotonic() + SECONDS

    def work(slot: int) -> None:
        try:
            for n in range(MAX_TXNS_PER_THREAD):
                if time.monotonic() >= stop_at:
                    return
                key = keyspace + b"%02d-%06d" % (slot, n)
                result = client.txn([Compare(key, CompareTarget.VERSION, CompareOp.EQUAL, 0)], [Op.put(key, b"d")])
                assert result.succeeded
                done[slot] += 1
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)

    started = time.monotonic()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(SECONDS + 30)
    elapsed = time.monotonic() - started
    assert not failed, failed
    assert sum(done) > 0
    return sum(done) / elapsed


@pytest.mark.bench
def test_txn_rate_one_and_sixteen_threads(etcd3: EtcdCluster, client3: EtcdClient, keyspace: bytes) -> None:
    one = _rate(client3, keyspace + b"1/", 1)
    sixteen = _rate(client3, keyspace + b"16/", 16)
    print(f"\netcd 3 members, durable create-if-absent Txn: 1 thread {one:.0f}/s, 16 threads {sixteen:.0f}/s "
          f"({sixteen / one:.1f}x)")
