"""etcdkv's records and their wire form: prefix ends, endpoint parsing, Compare
validation, and that each Compare target fills the matching member of etcd's oneof."""

from __future__ import annotations

import pytest

from emberfs.common.errors import InvalidArgument
from emberfs.metaserver.etcdkv import client, wire
from emberfs.metaserver.etcdkv.model import Compare, CompareOp, CompareTarget, Op, OpKind, prefix_end
from emberfs.proto import etcd_kv_pb2, etcd_rpc_pb2


@pytest.mark.parametrize(("prefix", "end"), [
    (b"a", b"b"),
    (b"/d/", b"/d0"),
    (b"a\xff", b"b"),
    (b"a\xff\xff", b"b"),
    (b"\xff", b"\0"),
    (b"", b"\0"),
])
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


@pytest.mark.parametrize(("text", "parsed"), [
    ("127.0.0.1:2379", "127.0.0.1:2379"),
    ("http://127.0.0.1:2379/", "127.0.0.1:2379"),
    (" localhost:1 ", "localhost:1"),
])
def test_parse_endpoint(text: str, parsed: str) -> None:
    assert client.parse_endpoint(text) == parsed


@pytest.mark.parametrize("text", ["127.0.0.1", "https://a:1", ":2379", "a:0", "a:65536", "a:x"])
def test_parse_endpoint_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument):
        client.parse_endpoint(text)


@pytest.mark.parametrize(("target", "value", "field"), [
    (CompareTarget.VERSION, 3, "version"),
    (CompareTarget.CREATE, 0, "create_revision"),
    (CompareTarget.MOD, 17, "mod_revision"),
    (CompareTarget.VALUE, b"v", "value"),
    (CompareTarget.LEASE, 9, "lease"),
])
def test_compare_sets_the_matching_oneof_member(target: CompareTarget, value: int | bytes, field: str) -> None:
    msg = wire.compare_to_pb(Compare(b"k", target, CompareOp.LESS, value, range_end=b"l"))
    assert msg.WhichOneof("target_union") == field and getattr(msg, field) == value
    assert (msg.target, msg.result, msg.key, msg.range_end) == (int(target), int(CompareOp.LESS), b"k", b"l")


@pytest.mark.parametrize(("target", "value"), [
    (CompareTarget.VALUE, 1),
    (CompareTarget.MOD, b"1"),
    (CompareTarget.VERSION, True),
    (CompareTarget.CREATE, 1.5),
])
def test_compare_refuses_a_value_of_the_wrong_type(target: CompareTarget, value: object) -> None:
    with pytest.raises(InvalidArgument):
        Compare(b"k", target, CompareOp.EQUAL, value)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    lambda: Op.put("k", b"v"),  # type: ignore[arg-type]
    lambda: Op.put(b"k", "v"),  # type: ignore[arg-type]
    lambda: Op.get(b"k", limit=-1),
    lambda: Compare("k", CompareTarget.MOD, CompareOp.EQUAL, 1),  # type: ignore[arg-type]
])
def test_keys_and_values_must_be_bytes(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument):
        bad()


def test_txn_request_and_result_round_trip() -> None:
    request = wire.txn_request(
        [Compare(b"a", CompareTarget.MOD, CompareOp.LESS, 5, range_end=b"b")],
        [Op.put(b"a1", b"x", lease=7), Op.get(b"a", b"b", limit=2, keys_only=True), Op.delete_range(b"c", b"d")],
        [Op.delete(b"z")],
    )
    put, get, delete = request.success
    assert (put.request_put.key, put.request_put.value, put.request_put.lease) == (b"a1", b"x", 7)
    assert (get.request_range.range_end, get.request_range.limit, get.request_range.keys_only) == (b"b", 2, True)
    assert (delete.request_delete_range.key, delete.request_delete_range.range_end) == (b"c", b"d")
    assert request.failure[0].request_delete_range.range_end == b""

    kv = etcd_kv_pb2.KeyValue(key=b"a1", value=b"x", create_revision=4, mod_revision=6, version=2, lease=7)
    response = etcd_rpc_pb2.TxnResponse(
        header=etcd_rpc_pb2.ResponseHeader(revision=6), succeeded=True,
        responses=[
            etcd_rpc_pb2.ResponseOp(response_put=etcd_rpc_pb2.PutResponse()),
            etcd_rpc_pb2.ResponseOp(response_range=etcd_rpc_pb2.RangeResponse(kvs=[kv], more=True)),
            etcd_rpc_pb2.ResponseOp(response_delete_range=etcd_rpc_pb2.DeleteRangeResponse(deleted=3)),
        ])
    result = wire.txn_result(response)
    assert result.succeeded and result.revision == 6
    assert [r.kind for r in result.responses] == [OpKind.PUT, OpKind.GET, OpKind.DELETE]
    got = result.responses[1]
    assert got.more and got.kvs[0].key == b"a1" and (got.kvs[0].mod_revision, got.kvs[0].version) == (6, 2)
    assert result.responses[2].deleted == 3


def test_method_paths_are_etcds() -> None:
    # The wire contract: etcd serves exactly these paths.
    names = {m.full_name for s in etcd_rpc_pb2.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert {"etcdserverpb.KV.Txn", "etcdserverpb.KV.Range", "etcdserverpb.Lease.LeaseKeepAlive",
            "etcdserverpb.Maintenance.Status"} <= names
    assert etcd_kv_pb2.DESCRIPTOR.package == "mvccpb"
