"""Bad requests sent straight to the gRPC stub, past the client's own validation.

Each must come back INVALID_ARGUMENT (with the exact EmberFS code in the trailing
metadata), change nothing, and leave the server serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emberfs.common.errors import ERROR_METADATA_KEY
from emberfs.proto import common_pb2, meta_pb2, meta_pb2_grpc

pytestmark = pytest.mark.timeout(60)

H = common_pb2.RequestHeader(client_id="bad-input-test", uid=0, gid=0)
LONG = "n" * 256


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One encoded field: wire type 0 takes a varint payload, 2 a length-delimited one."""
    tag = _varint(number << 3 | wire_type)
    return tag + (payload if wire_type == 0 else _varint(len(payload)) + payload)


@pytest.fixture(scope="module")
def channel(shared_meta) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(shared_meta.address) as ch:
        stub = meta_pb2_grpc.MetaStub(ch)
        # Something to find (and to damage, if validation failed).
        stub.Mkdir(meta_pb2.MkdirRequest(header=H, path="/x", mode=0o755), timeout=10)
        stub.Create(meta_pb2.CreateRequest(header=H, path="/x/f", mode=0o644), timeout=10)
        yield ch


def _snapshot(stub: meta_pb2_grpc.MetaStub) -> tuple:
    fs = stub.StatFs(meta_pb2.StatFsRequest(header=H), timeout=10)
    listing = stub.List(meta_pb2.ListRequest(header=H, path="/", with_attrs=True), timeout=10)
    inner = stub.List(meta_pb2.ListRequest(header=H, path="/x", with_attrs=True), timeout=10)
    return fs.SerializeToString(), listing.SerializeToString(), inner.SerializeToString()


def _raw(ch: grpc.Channel, method: str, payload: bytes) -> None:
    call = ch.unary_unary(f"/emberfs.Meta/{method}", request_serializer=None, response_deserializer=None)
    call(payload, timeout=10)


def case(name: str, send: Callable[[grpc.Channel], object], **marks: object) -> object:
    return pytest.param(send, id=name, **marks)


S = meta_pb2_grpc.MetaStub
BAD = [
    case("nul in name", lambda ch: S(ch).Mkdir(meta_pb2.MkdirRequest(header=H, path="/a\x00b", mode=0o755))),
    case("nul in create", lambda ch: S(ch).Create(meta_pb2.CreateRequest(header=H, path="/x/\x00", mode=0o644))),
    case("slash in a name (list cursor)",
         lambda ch: S(ch).List(meta_pb2.ListRequest(header=H, path="/", start_after="a/b"))),
    case("dot", lambda ch: S(ch).Mkdir(meta_pb2.MkdirRequest(header=H, path="/x/.", mode=0o755))),
    case("dot-dot", lambda ch: S(ch).Mkdir(meta_pb2.MkdirRequest(header=H, path="/x/..", mode=0o755))),
    case("dot inside", lambda ch: S(ch).Create(meta_pb2.CreateRequest(header=H, path="/x/./g", mode=0o644))),
    case("dot-dot rename", lambda ch: S(ch).Rename(meta_pb2.RenameRequest(header=H, src="/x/f", dst="/x/.."))),
    case("256-byte name", lambda ch: S(ch).Mkdir(meta_pb2.MkdirRequest(header=H, path="/" + LONG, mode=0o755))),
    case("256-byte link", lambda ch: S(ch).Link(meta_pb2.LinkRequest(header=H, src="/x/f", dst="/x/" + LONG))),
    case("256-byte symlink",
         lambda ch: S(ch).Symlink(meta_pb2.SymlinkRequest(header=H, target="f", path="/x/" + LONG))),
    case("relative path", lambda ch: S(ch).Mkdir(meta_pb2.MkdirRequest(header=H, path="rel/dir", mode=0o755))),
    case("empty path", lambda ch: S(ch).Create(meta_pb2.CreateRequest(header=H, path="", mode=0o644))),
    case("relative stat", lambda ch: S(ch).Stat(meta_pb2.StatRequest(header=H, path="x"))),
    case("mode > 0o7777 mkdir", lambda ch: S(ch).Mkdir(meta_pb2.MkdirRequest(header=H, path="/m", mode=0o10000))),
    case("mode > 0o7777 create",
         lambda ch: S(ch).Create(meta_pb2.CreateRequest(header=H, path="/m", mode=0xFFFFFFFF))),
    case("mode > 0o7777 chmod",
         lambda ch: S(ch).SetAttr(meta_pb2.SetAttrRequest(header=H, path="/x/f", mode=0o100644))),
    case("no remove kind", lambda ch: S(ch).Remove(meta_pb2.RemoveRequest(header=H, path="/x/f"))),
    case(
        "unknown field",
        lambda ch: _raw(
            ch,
            "Mkdir",
            meta_pb2.MkdirRequest(header=H, path="/u", mode=0o755).SerializeToString() + _field(99, 0, _varint(1)),
        ),
    ),
    case(
        "unknown field in the header",
        lambda ch: _raw(
            ch,
            "Create",
            meta_pb2.CreateRequest(header=H, path="/u", mode=0o644).SerializeToString()
            + _field(1, 2, _field(15, 2, b"future")),
        ),
    ),
    case(
        "path not UTF-8",
        lambda ch: _raw(
            ch, "Mkdir", _field(1, 2, H.SerializeToString()) + _field(2, 2, b"/\xff\xfe") + _field(3, 0, _varint(0o755))
        ),
        # Fails to decode as protobuf; the metaserver decodes inside its error mapping.
    ),
]


@pytest.mark.parametrize("send", BAD)
def test_bad_request_is_invalid_argument_and_changes_nothing(channel, send) -> None:
    stub = meta_pb2_grpc.MetaStub(channel)
    before = _snapshot(stub)
    with pytest.raises(grpc.RpcError) as info:
        send(channel)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    codes = [v for k, v in info.value.trailing_metadata() or () if k == ERROR_METADATA_KEY]
    assert codes and codes[0] in ("InvalidArgument", "NameTooLong"), codes
    assert _snapshot(stub) == before
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="emberfs.Meta"), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_request_with_only_known_fields_still_works(channel) -> None:
    """The control for the raw-bytes cases above: the same path, without the bad bytes."""
    raw = meta_pb2.MkdirRequest(header=H, path="/control", mode=0o755).SerializeToString()
    mkdir = channel.unary_unary("/emberfs.Meta/Mkdir", request_serializer=None, response_deserializer=None)
    reply = mkdir(raw, timeout=10)
    assert meta_pb2.MkdirResponse.FromString(reply).inode.type == meta_pb2.DIRECTORY
