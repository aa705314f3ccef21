"""EtcdClient against a real one-member etcd: reads at revisions and with limits, Txn
success and failure paths, range compares that conflict with an insert, etcd's limits
as clear errors, leases that live while kept alive and expire when not, and an
endpoint that is down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emberfs.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from emberfs.metaserver.etcdkv.client import EtcdClient, LeaseKeeper
from emberfs.metaserver.etcdkv.errors import LimitExceeded, OutcomeUnknown
from emberfs.metaserver.etcdkv.model import Compare, CompareOp, CompareTarget, Op, OpKind, prefix_end
from emberfs.metaserver.etcdkv.launch import EtcdCluster, EtcdNotFound, _free_ports

MOD, VERSION, CREATE, VALUE = CompareTarget.MOD, CompareTarget.VERSION, CompareTarget.CREATE, CompareTarget.VALUE
EQ, LESS, GREATER = CompareOp.EQUAL, CompareOp.LESS, CompareOp.GREATER


def test_put_get_and_read_at_an_older_revision(client1: EtcdClient, keyspace: bytes) -> None:
    key = keyspace + b"a"
    assert client1.get(key) is None
    first = client1.put(key, b"one")
    second = client1.put(key, b"two")
    assert second > first
    kv = client1.get(key)
    assert kv is not None and (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"two", first, second, 2)
    old = client1.range(key, revision=first)
    assert [k.value for k in old.kvs] == [b"one"] and old.revision >= second  # header: the store's revision now
    assert client1.delete_range(key) == 1 and client1.get(key) is None
    assert client1.delete_range(key) == 0


def test_serializable_reads_at_a_revision(client1: EtcdClient, keyspace: bytes) -> None:
    key = keyspace + b"s"
    first = client1.put(key, b"one")
    client1.put(key, b"two")
    assert [kv.value for kv in client1.range(key, revision=first, serializable=True).kvs] == [b"one"]
    latest = client1.range(key).revision
    with pytest.raises(FailedPrecondition, match="future revision"):
        client1.range(key, revision=latest + 1000, serializable=True)


def test_range_limit_keys_only_and_delete_range(client1: EtcdClient, keyspace: bytes) -> None:
    for name in (b"c", b"a", b"e", b"b", b"d"):
        client1.put(keyspace + name, b"v" + name)
    end = prefix_end(keyspace)
    page = client1.range(keyspace, end, limit=2)
    assert [kv.key for kv in page.kvs] == [keyspace + b"a", keyspace + b"b"] and page.more
    rest = client1.range(keyspace + b"b\0", end, limit=10)  # resume after the last key seen
    assert [kv.key[-1:] for kv in rest.kvs] == [b"c", b"d", b"e"] and not rest.more
    keys = client1.range(keyspace, end, keys_only=True)
    assert len(keys.kvs) == 5 and all(kv.value == b"" for kv in keys.kvs)
    assert client1.delete_range(keyspace + b"b", keyspace + b"d") == 2  # [b, d)
    assert [kv.key[-1:] for kv in client1.range(keyspace, end).kvs] == [b"a", b"d", b"e"]


def test_txn_success_and_failure_branches(client1: EtcdClient, keyspace: bytes) -> None:
    key = keyspace + b"k"
    create = [Compare(key, VERSION, EQ, 0)]  # create only if absent
    made = client1.txn(create, [Op.put(key, b"first")], [Op.get(key)])
    assert made.succeeded and [r.kind for r in made.responses] == [OpKind.PUT]
    again = client1.txn(create, [Op.put(key, b"second")], [Op.get(key)])
    assert not again.succeeded
    assert again.responses[0].kvs[0].value == b"first"  # the failure branch's read
    assert again.revision == made.revision  # nothing was written

    kv = client1.get(key)
    assert kv is not None
    swap = client1.txn([Compare(key, MOD, EQ, kv.mod_revision), Compare(key, VALUE, EQ, b"first"),
                        Compare(key, CREATE, EQ, kv.create_revision)],
                       [Op.put(key, b"swapped"), Op.put(keyspace + b"other", b"x"), Op.get(key)])
    assert swap.succeeded and swap.revision == made.revision + 1  # one revision for both puts
    assert swap.responses[2].kvs[0].value == b"swapped" and swap.responses[2].kvs[0].mod_revision == swap.revision
    stale = client1.txn([Compare(key, MOD, EQ, kv.mod_revision)], [Op.delete(key)])
    assert not stale.succeeded and client1.get(key) is not None


def test_range_compare_fails_after_an_insert_into_the_range(client1: EtcdClient, keyspace: bytes) -> None:
    """The optimistic engine's rule for a scanned range: MOD LESS rev+1 over [a, b) holds
    until any key in [a, b) is written after rev, including a key that did not exist."""
    start, end = keyspace + b"a", keyspace + b"b"
    client1.put(keyspace + b"a1", b"x")
    client1.put(keyspace + b"b0", b"outside")  # outside [a, b): must not matter
    seen = client1.range(start, end)
    guard = [Compare(start, MOD, LESS, seen.revision + 1, range_end=end)]
    assert client1.txn(guard, [Op.get(start, end)]).succeeded
    client1.put(keyspace + b"b1", b"still outside")
    assert client1.txn(guard, [Op.get(start, end)]).succeeded
    client1.put(keyspace + b"a0", b"new")  # an insert into the range
    assert not client1.txn(guard, [Op.put(keyspace + b"marker", b"x")]).succeeded
    assert client1.get(keyspace + b"marker") is None


def test_too_many_ops_is_a_clear_error_and_writes_nothing(etcd1: EtcdCluster, client1: EtcdClient,
                                                          keyspace: bytes) -> None:
    limit = etcd1.max_txn_ops  # etcd's --max-txn-ops (128 by default; our clusters allow more)
    ops = [Op.put(keyspace + b"%05d" % i, b"x") for i in range(limit + 1)]
    with pytest.raises(LimitExceeded) as caught:
        client1.txn([], ops)
    assert isinstance(caught.value, InvalidArgument) and caught.value.limit == "max-txn-ops"
    assert "--max-txn-ops" in str(caught.value)
    assert client1.range(keyspace, prefix_end(keyspace)).kvs == []
    assert client1.txn([], ops[:limit]).succeeded  # at the limit: accepted


def test_a_value_over_the_request_limit_is_a_clear_error(etcd1: EtcdCluster, client1: EtcdClient,
                                                         keyspace: bytes) -> None:
    big = b"x" * (1_572_864 + 1)
    with pytest.raises(LimitExceeded, match="max-request-bytes") as caught:
        client1.put(keyspace + b"big", big)  # refused here, never sent
    assert "not sent" in str(caught.value)
    # A client that believes in a larger limit sends it; etcd itself refuses, same error.
    with (EtcdClient(etcd1.endpoints, timeout=5.0, max_request_bytes=4 << 20) as lax,
          pytest.raises(LimitExceeded, match="max-request-bytes")):
        lax.put(keyspace + b"big", big)
    assert client1.get(keyspace + b"big") is None
    client1.put(keyspace + b"fits", b"y" * 1_500_000)
    kv = client1.get(keyspace + b"fits")
    assert kv is not None and len(kv.value) == 1_500_000


def test_lease_lives_while_kept_alive_then_expires(client1: EtcdClient, keyspace: bytes) -> None:
    ttl = 2  # etcd's minimum with a 1 s election timeout
    lease = client1.lease_grant(ttl)
    key = keyspace + b"leased"
    client1.put(key, b"x", lease=lease)
    assert client1.lease_keepalive_once(lease) == ttl
    keeper = LeaseKeeper(client1, lease, ttl).start()
    try:
        time.sleep(ttl * 2)
        assert client1.get(key) is not None and not keeper.lost.is_set()
    finally:
        keeper.stop()
    deadline = time.monotonic() + ttl + 10
    while client1.get(key) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client1.get(key) is None, "the lease never expired"
    assert client1.lease_time_to_live(lease) == -1
    with pytest.raises(NotFound):
        client1.lease_keepalive_once(lease)


def test_lease_revoke_deletes_its_keys_and_a_keeper_sees_the_loss(client1: EtcdClient, keyspace: bytes) -> None:
    lease = client1.lease_grant(30)
    client1.put(keyspace + b"a", b"x", lease=lease)
    assert 0 < client1.lease_time_to_live(lease) <= 30
    keeper = LeaseKeeper(client1, lease, 3).start()  # renews every second
    try:
        client1.lease_revoke(lease)
        assert client1.get(keyspace + b"a") is None
        assert keeper.lost.wait(5), "the keeper did not notice the revoked lease"
        assert isinstance(keeper.error, NotFound)
    finally:
        keeper.stop()
    with pytest.raises(NotFound):
        client1.lease_revoke(lease)


def test_a_dead_endpoint_is_skipped_and_all_dead_is_unavailable(etcd1: EtcdCluster, keyspace: bytes) -> None:
    dead = f"127.0.0.1:{_free_ports(1)[0]}"
    with EtcdClient([dead, *etcd1.endpoints], timeout=5.0) as client:
        client.put(keyspace + b"k", b"v")  # a write too: refused connections are surely not sent
        assert client.current_endpoint == etcd1.endpoints[0]
    with EtcdClient([dead], timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            client.put(keyspace + b"k", b"v")
        assert not isinstance(caught.value, OutcomeUnknown)  # it never left this process
        assert time.monotonic() - started < 3.0


def test_status_names_the_leader(etcd1: EtcdCluster, client1: EtcdClient) -> None:
    status = client1.status(etcd1.endpoints[0])
    assert status.is_leader and status.version.startswith("3.")
    assert etcd1.leader() == 0


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBERFS_ETCD", str(tmp_path / "no-such-etcd"))
    hint = r"etcd not found: install Debian's etcd-server \(apt-get install etcd-server\)"
    with pytest.raises(EtcdNotFound, match=hint):
        EtcdCluster(tmp_path / "c").start(timeout=5)


def test_a_txn_writing_a_key_twice_is_refused(client1: EtcdClient, keyspace: bytes) -> None:
    """etcd's rule the engine must respect: a put inside a delete range of the same Txn."""
    with pytest.raises(InvalidArgument, match="delete range of the same Txn"):
        client1.txn([], [Op.delete_range(keyspace, prefix_end(keyspace)), Op.put(keyspace + b"k", b"v")])
    assert client1.get(keyspace + b"k") is None
