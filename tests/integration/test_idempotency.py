"""A retried non-idempotent request (same client_id + request_id) gets the first reply.

Sent twice through the raw stub, as a client whose first reply was lost would send
it: the second must neither fail (AlreadyExists, NotFound) nor apply again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest

from emberfs.proto import common_pb2, meta_pb2, meta_pb2_grpc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stub(shared_meta) -> Iterator[meta_pb2_grpc.MetaStub]:
    with grpc.insecure_channel(shared_meta.address) as ch:
        yield meta_pb2_grpc.MetaStub(ch)


@pytest.fixture
def header() -> common_pb2.RequestHeader:
    return common_pb2.RequestHeader(client_id=uuid.uuid4().hex, request_id=1, uid=0, gid=0)


def _with_id(h: common_pb2.RequestHeader, request_id: int) -> common_pb2.RequestHeader:
    out = common_pb2.RequestHeader()
    out.CopyFrom(h)
    out.request_id = request_id
    return out


def _twice(call, request):
    first = call(request, timeout=10)
    second = call(request, timeout=10)
    assert second == first
    return first


def _names(stub, h, path) -> list[str]:
    return [e.name for e in stub.List(meta_pb2.ListRequest(header=_with_id(h, 0), path=path), timeout=10).entries]


def test_create_mkdir_symlink_link_twice(stub, header, workdir) -> None:
    h = header
    first = _twice(stub.Create,
                   meta_pb2.CreateRequest(header=_with_id(h, 1), path=f"{workdir}/f", mode=0o644, exclusive=True))
    assert first.created
    _twice(stub.Mkdir, meta_pb2.MkdirRequest(header=_with_id(h, 2), path=f"{workdir}/d", mode=0o755))
    _twice(stub.Symlink, meta_pb2.SymlinkRequest(header=_with_id(h, 3), target="f", path=f"{workdir}/s"))
    linked = _twice(stub.Link, meta_pb2.LinkRequest(header=_with_id(h, 4), src=f"{workdir}/f", dst=f"{workdir}/h"))
    assert linked.inode.nlink == 2  # linked once, not twice
    stat = stub.Stat(meta_pb2.StatRequest(header=_with_id(h, 0), path=f"{workdir}/f"), timeout=10)
    assert stat.inode.nlink == 2
    assert _names(stub, h, workdir) == ["d", "f", "h", "s"]
    # A NEW request id is a new operation, and gets the ordinary answer.
    with pytest.raises(grpc.RpcError) as info:
        stub.Create(meta_pb2.CreateRequest(header=_with_id(h, 5), path=f"{workdir}/f", mode=0o644, exclusive=True),
                    timeout=10)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_remove_and_rename_twice(stub, header, workdir) -> None:
    h = header
    for i, name in enumerate(("a", "b", "c")):
        stub.Create(meta_pb2.CreateRequest(header=_with_id(h, 10 + i), path=f"{workdir}/{name}", mode=0o644),
                    timeout=10)
    removed = _twice(stub.Remove,
                     meta_pb2.RemoveRequest(header=_with_id(h, 20), path=f"{workdir}/a", kind=meta_pb2.NON_DIRECTORY))
    assert removed.removed == 1
    _twice(stub.Rename, meta_pb2.RenameRequest(header=_with_id(h, 21), src=f"{workdir}/b", dst=f"{workdir}/b2"))
    # Replayed after a third party changed things: still the first reply, nothing re-applied.
    stub.Create(meta_pb2.CreateRequest(header=_with_id(h, 22), path=f"{workdir}/b", mode=0o644), timeout=10)
    again = stub.Rename(meta_pb2.RenameRequest(header=_with_id(h, 21), src=f"{workdir}/b", dst=f"{workdir}/b2"),
                        timeout=10)
    assert again.inode.inode_id != 0
    assert _names(stub, h, workdir) == ["b", "b2", "c"]
    with pytest.raises(grpc.RpcError) as info:
        stub.Remove(meta_pb2.RemoveRequest(header=_with_id(h, 23), path=f"{workdir}/a", kind=meta_pb2.NON_DIRECTORY),
                    timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_request_ids_are_per_client(stub, header, workdir) -> None:
    """The same request id from another client id is a different request."""
    other = common_pb2.RequestHeader(client_id=uuid.uuid4().hex, request_id=1, uid=0, gid=0)
    stub.Mkdir(meta_pb2.MkdirRequest(header=header, path=f"{workdir}/one", mode=0o755), timeout=10)
    stub.Mkdir(meta_pb2.MkdirRequest(header=other, path=f"{workdir}/two", mode=0o755), timeout=10)
    assert _names(stub, header, workdir) == ["one", "two"]
