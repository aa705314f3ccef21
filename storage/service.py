"""The Storage gRPC servicer: decode, call the CRAQ operator, map errors in one place.

The `_rpc` decorator is the only place errors become gRPC statuses: an EmberError
becomes its status with its exact code in the `emberfs-error` trailing metadata;
anything else is a bug, logged with its traceback, answered INTERNAL, and the
server keeps serving. A request that does not parse reaches the servicer (see
`add_storage_servicer`) and is answered INVALID_ARGUMENT.
SyncDump/SyncDone are not implemented yet (resync is issue 5): grpc answers them
UNIMPLEMENTED.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from emberfs.common import errors
from emberfs.common.errors import EmberError, Internal, InvalidArgument
from emberfs.proto import storage_pb2

from .craq import Operator

__all__ = ["StorageServicer", "add_storage_servicer"]

log = logging.getLogger("emberfs.storage.service")

_Handler = Callable[..., Awaitable[Any]]
_IMPLEMENTED = ("Write", "Forward", "Read", "GetCommitVersion", "RemoveChunks", "QueryLastChunk", "TargetStats")


class _Undecodable:
    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(message_type: type[Message]) -> Callable[[bytes], Message | _Undecodable]:
    def decode(raw: bytes) -> Message | _Undecodable:
        try:
            return message_type.FromString(raw)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return decode


def _rpc(method: _Handler) -> _Handler:
    @functools.wraps(method)
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if isinstance(request, _Undecodable):
                raise InvalidArgument(f"request does not parse: {request.error}")
            return await method(self, request, context)
        except EmberError as exc:
            error: EmberError = exc
        except Exception:
            log.exception("%s failed", method.__name__)
            error = Internal("internal error (see the storage server log)")
        await context.abort(
            error.grpc_status, error.message, trailing_metadata=((errors.ERROR_METADATA_KEY, error.code),)
        )

    return handler


class StorageServicer:
    def __init__(self, operator: Operator) -> None:
        self.op = operator

    @_rpc
    async def Write(self, request: storage_pb2.WriteRequest, context: Any) -> storage_pb2.WriteResponse:
        return await self.op.write(request)

    @_rpc
    async def Forward(self, request: storage_pb2.ForwardRequest, context: Any) -> storage_pb2.WriteResponse:
        return await self.op.forward(request)

    @_rpc
    async def Read(self, request: storage_pb2.ReadRequest, context: Any) -> storage_pb2.ReadResponse:
        return await self.op.read(request)

    @_rpc
    async def GetCommitVersion(self, request: storage_pb2.GetCommitVersionRequest,
                               context: Any) -> storage_pb2.GetCommitVersionResponse:
        return await self.op.get_commit_version(request)

    @_rpc
    async def RemoveChunks(self, request: storage_pb2.RemoveChunksRequest,
                           context: Any) -> storage_pb2.RemoveChunksResponse:
        return await self.op.remove_chunks(request)

    @_rpc
    async def QueryLastChunk(self, request: storage_pb2.QueryLastChunkRequest,
                             context: Any) -> storage_pb2.QueryLastChunkResponse:
        return await self.op.query_last_chunk(request)

    @_rpc
    async def TargetStats(self, request: storage_pb2.TargetStatsRequest,
                          context: Any) -> storage_pb2.TargetStatsResponse:
        return await self.op.target_stats()


def add_storage_servicer(servicer: StorageServicer, server: grpc.aio.Server) -> None:
    """Register the implemented Storage methods with lenient decoding; the others
    (SyncDump, SyncDone) are left to grpc's UNIMPLEMENTED."""
    service = storage_pb2.DESCRIPTOR.services_by_name["Storage"]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient(getattr(storage_pb2, method.input_type.name)),
            response_serializer=getattr(storage_pb2, method.output_type.name).SerializeToString,
        )
        for method in service.methods
        if method.name in _IMPLEMENTED
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
