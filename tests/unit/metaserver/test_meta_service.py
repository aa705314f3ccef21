"""The Meta gRPC service, served in-process by the real grpc.aio server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emberfs.common import errors
from emberfs.metaserver import service
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.server import build_server
from emberfs.metaserver.store import MetaStore
from emberfs.proto import common_pb2, meta_pb2, meta_pb2_grpc

Scenario = Callable[[meta_pb2_grpc.MetaStub, grpc.aio.Channel], Awaitable[None]]


def _serve(config: MetaConfig, scenario: Scenario, extra: tuple = ()) -> None:
    async def main() -> None:
        store = MetaStore(config)
        meta = build_server(
            MetaConfig(data_dir=config.data_dir, listen="127.0.0.1:0"), store, extra_servicers=extra
        )
        await meta.start()
        try:
            assert meta.port > 0
            async with grpc.aio.insecure_channel(meta.address) as channel:
                await scenario(meta_pb2_grpc.MetaStub(channel), channel)
        finally:
            await meta.stop(0.5)
            await store.aclose()

    asyncio.run(main())


async def _fails(call: Awaitable[Any], status: grpc.StatusCode, code: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == status, err.details()
    assert (errors.ERROR_METADATA_KEY, code) in tuple(err.trailing_metadata() or ())
    assert isinstance(errors.from_rpc_error(err), errors.error_for_code(code))
    return err.details() or ""


def _with_unknown(message: Any, field_number: int = 99) -> bytes:
    # varint field `field_number` = 1, appended to a valid encoding
    return message.SerializeToString() + bytes([(field_number << 3) & 0x7F | 0x80, field_number >> 4, 1])


def test_unknown_fields_are_refused(config: MetaConfig) -> None:
    async def scenario(stub: Any, channel: grpc.aio.Channel) -> None:
        raw_stat = channel.unary_unary(
            "/emberfs.Meta/Stat", request_serializer=None, response_deserializer=meta_pb2.StatResponse.FromString
        )
        details = await _fails(
            raw_stat(_with_unknown(meta_pb2.StatRequest(path="/"))), grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument"
        )
        assert "99" in details
        header = common_pb2.RequestHeader(uid=0)
        bad_header = common_pb2.RequestHeader.FromString(_with_unknown(header, 42))
        details = await _fails(
            stub.Stat(meta_pb2.StatRequest(path="/", header=bad_header)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "InvalidArgument",
        )
        assert "header.42" in details
        # A string field that is not UTF-8 fails to parse: still INVALID_ARGUMENT, not UNKNOWN.
        not_utf8 = bytes([0x12, 3]) + b"/\xff\xfe"  # field 2 (path), length 3
        await _fails(raw_stat(not_utf8), grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
        await _fails(raw_stat(b"\xff\xff\xff"), grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
        assert (await stub.Stat(meta_pb2.StatRequest(path="/"))).inode.inode_id == 1

    _serve(config, scenario)


BAD_PATHS = ["/a\x00b", "/.", "/a/..", "/" + "x" * 256, "relative", "", "/" + "a/" * 2100]


def test_bad_paths_names_and_values(config: MetaConfig) -> None:
    async def scenario(stub: Any, channel: grpc.aio.Channel) -> None:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        for path in BAD_PATHS:
            code = "NameTooLong" if len(path) > 255 else "InvalidArgument"
            await _fails(stub.Mkdir(meta_pb2.MkdirRequest(path=path, mode=0o755)), invalid, code)
            await _fails(stub.Stat(meta_pb2.StatRequest(path=path)), invalid, code)
            await _fails(stub.Rename(meta_pb2.RenameRequest(src="/x", dst=path)), invalid, code)
        for name in ("a/b", "a\x00", ".", "..", "x" * 256):
            code = "NameTooLong" if len(name) > 255 else "InvalidArgument"
            await _fails(stub.List(meta_pb2.ListRequest(path="/", start_after=name)), invalid, code)
        for mode in (0o10000, 0xFFFFFFFF):
            await _fails(stub.Create(meta_pb2.CreateRequest(path="/f", mode=mode)), invalid, "InvalidArgument")
            await _fails(stub.Mkdir(meta_pb2.MkdirRequest(path="/d", mode=mode)), invalid, "InvalidArgument")
            await _fails(stub.SetAttr(meta_pb2.SetAttrRequest(path="/", mode=mode)), invalid, "InvalidArgument")
        await _fails(stub.Create(meta_pb2.CreateRequest(path="/f", mode=0o644, chunk_size=1000)), invalid,
                     "InvalidArgument")
        await _fails(stub.Mkdir(meta_pb2.MkdirRequest(path="/d", mode=0o755, stripe=300)), invalid, "InvalidArgument")
        await _fails(stub.Remove(meta_pb2.RemoveRequest(path="/x")), invalid, "InvalidArgument")
        await _fails(stub.Remove(meta_pb2.RemoveRequest(path="/x", kind=9)), invalid, "InvalidArgument")
        await _fails(stub.Symlink(meta_pb2.SymlinkRequest(path="/l", target="a\x00")), invalid, "InvalidArgument")
        await _fails(stub.Close(meta_pb2.CloseRequest(session_id=1)), invalid, "InvalidArgument")
        header = common_pb2.RequestHeader(client_id="c" * 300, request_id=1)
        await _fails(stub.Mkdir(meta_pb2.MkdirRequest(header=header, path="/d", mode=0o755)), invalid,
                     "InvalidArgument")
        # Namespace errors keep their own codes.
        await _fails(stub.Remove(meta_pb2.RemoveRequest(path="/", kind=3)), grpc.StatusCode.FAILED_PRECONDITION, "Busy")
        await _fails(stub.Stat(meta_pb2.StatRequest(path="/nope")), grpc.StatusCode.NOT_FOUND, "NotFound")
        # Nothing was created by any of it, and the server still answers.
        assert (await stub.List(meta_pb2.ListRequest(path="/"))).entries == []
        assert (await stub.StatFs(meta_pb2.StatFsRequest())).directories == 1

    _serve(config, scenario)


def test_namespace_round_trip_and_retry(config: MetaConfig) -> None:
    async def scenario(stub: Any, channel: grpc.aio.Channel) -> None:
        user = common_pb2.RequestHeader(client_id="client-1", request_id=1, uid=0, gid=0)
        made = await stub.Mkdir(meta_pb2.MkdirRequest(header=user, path="/data/x", mode=0o755, parents=True))
        assert made == await stub.Mkdir(meta_pb2.MkdirRequest(header=user, path="/data/x", mode=0o755, parents=True))
        user.request_id = 2
        created = await stub.Create(
            meta_pb2.CreateRequest(header=user, path="/data/f", mode=0o644, open_for_write=True))
        assert created.created and created.session_id
        synced = await stub.Sync(meta_pb2.SyncRequest(
            session_id=created.session_id, inode_id=created.inode.inode_id, length=10, wrote=True))
        assert synced.inode.length == 10
        closed = await stub.Close(meta_pb2.CloseRequest(
            session_id=created.session_id, inode_id=created.inode.inode_id, length=20, wrote=True))
        assert closed.inode.length == 20
        opened = await stub.Open(meta_pb2.OpenRequest(path="/data/f"))
        assert opened.session_id == 0 and opened.inode.length == 20
        assert (await stub.Truncate(meta_pb2.TruncateRequest(path="/data/f", length=5))).inode.length == 5
        attrs = await stub.SetAttr(meta_pb2.SetAttrRequest(path="/data/f", mode=0o600, uid=7))
        assert (attrs.inode.mode, attrs.inode.uid, attrs.inode.gid) == (0o600, 7, 0)  # unset gid untouched
        await stub.Symlink(meta_pb2.SymlinkRequest(path="/data/l", target="f"))
        assert (await stub.Readlink(meta_pb2.ReadlinkRequest(path="/data/l"))).target == "f"
        await stub.Link(meta_pb2.LinkRequest(src="/data/f", dst="/data/g"))
        await stub.Rename(meta_pb2.RenameRequest(src="/data/g", dst="/data/x/g"))
        listing = await stub.List(meta_pb2.ListRequest(path="/data", with_attrs=True))
        assert [(e.name, e.inode.nlink) for e in listing.entries] == [("f", 2), ("l", 1), ("x", 2)]
        user.request_id = 3
        rm = meta_pb2.RemoveRequest(header=user, path="/data", kind=meta_pb2.RECURSIVE)
        assert (await stub.Remove(rm)).removed == 5
        assert (await stub.Remove(rm)).removed == 5  # the retry gets the first reply
        assert (await stub.StatFs(meta_pb2.StatFsRequest())).inodes == 1

    _serve(config, scenario)


def test_permissions_come_from_the_header(config: MetaConfig) -> None:
    async def scenario(stub: Any, channel: grpc.aio.Channel) -> None:
        await stub.Mkdir(meta_pb2.MkdirRequest(path="/root-only", mode=0o700))
        bob = common_pb2.RequestHeader(uid=1001, gid=1001, groups=[50])
        await _fails(
            stub.Create(meta_pb2.CreateRequest(header=bob, path="/root-only/f", mode=0o644)),
            grpc.StatusCode.PERMISSION_DENIED,
            "PermissionDenied",
        )
        await stub.SetAttr(meta_pb2.SetAttrRequest(path="/root-only", mode=0o770, gid=50))
        made = await stub.Create(meta_pb2.CreateRequest(header=bob, path="/root-only/f", mode=0o644))
        assert (made.inode.uid, made.inode.gid) == (1001, 1001)

    _serve(config, scenario)


class _Broken(service.MetaServicer):
    @service._rpc
    async def StatFs(self, request: Any, context: Any) -> Any:
        raise RuntimeError("a bug")


def test_unexpected_errors_become_internal_and_the_server_survives(config: MetaConfig, caplog: Any) -> None:
    async def scenario(stub: Any, channel: grpc.aio.Channel) -> None:
        broken = channel.unary_unary(
            "/emberfs.Broken/StatFs",
            request_serializer=meta_pb2.StatFsRequest.SerializeToString,
            response_deserializer=meta_pb2.StatFsResponse.FromString,
        )
        details = await _fails(broken(meta_pb2.StatFsRequest()), grpc.StatusCode.INTERNAL, "Internal")
        assert details == "internal error (see server log)"
        assert (await stub.Stat(meta_pb2.StatRequest(path="/"))).inode.inode_id == 1
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service="emberfs.Meta"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING

    def add_broken(server: grpc.aio.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            "emberfs.Broken",
            {
                "StatFs": grpc.unary_unary_rpc_method_handler(
                    _Broken(store=None).StatFs,  # type: ignore[arg-type]
                    request_deserializer=meta_pb2.StatFsRequest.FromString,
                    response_serializer=meta_pb2.StatFsResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))

    _serve(config, scenario, extra=(add_broken,))
    assert "a bug" in caplog.text
