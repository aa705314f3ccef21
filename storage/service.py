"""The Storage gRPC servicer: decode, call the CRAQ operator, map errors in one place.

The `_rpc` decorator is the only place errors become gRPC statuses: an EmberError
becomes its status with its exact code in the `emberfs-error` trailing metadata;
anything else is a bug, logged with its traceback, answered INTERNAL, and the
server keeps serving. A request that does not parse reaches the servicer (see
`add_storage_servicer`) and is answered INVALID_ARGUMENT.
SyncDump/SyncDone serve a resync (syncrecv.py).

With tokens, Read and Write first pass the capability check (access.py, the same one
the bulk server runs) with the caller the token interceptor identified.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from emberfs.common.authgrpc import current_principal
from emberfs.common.servicing import add_servicer, rpc_handler
from emberfs.proto import storage_pb2

from .access import RIGHT_READ, RIGHT_WRITE, AccessGuard
from .craq import Operator

__all__ = ["StorageServicer", "add_storage_servicer"]

log = logging.getLogger("emberfs.storage.service")

_IMPLEMENTED = ("Write", "Forward", "Read", "GetCommitVersion", "RemoveChunks", "QueryLastChunk", "TargetStats",
                "SyncDump", "SyncDone")


# Storage requests skip the unknown-field walk: it would cost every chunk request on
# the data path a pass over its message.
_rpc = rpc_handler(log, allow_unknown_fields=True, internal_message="internal error (see the storage server log)")


class StorageServicer:
    def __init__(self, operator: Operator, guard: AccessGuard | None = None) -> None:
        self.op = operator
        self.guard = guard  # None: tokens off, no capability checks

    @_rpc
    async def Write(self, request: storage_pb2.WriteRequest, context: Any) -> storage_pb2.WriteResponse:
        if self.guard is not None:
            self.guard.check(current_principal(), request.capability, request.chunk.inode_id, RIGHT_WRITE)
        return await self.op.write(request)

    @_rpc
    async def Forward(self, request: storage_pb2.ForwardRequest, context: Any) -> storage_pb2.WriteResponse:
        return await self.op.forward(request)

    @_rpc
    async def Read(self, request: storage_pb2.ReadRequest, context: Any) -> storage_pb2.ReadResponse:
        if self.guard is not None:
            self.guard.check(current_principal(), request.capability, request.chunk.inode_id, RIGHT_READ)
        return await self.op.read(request)

    @_rpc
    async def GetCommitVersion(self, request: storage_pb2.GetCommitVersionRequest,
                               context: Any) -> storage_pb2.GetCommitVersionResponse:
        return await self.op.get_commit_version(request)

    @_rpc
    async def RemoveChunks(self, request: storage_pb2.RemoveChunksRequest,
                           context: Any) -> storage_pb2.RemoveChunksResponse:
        return await self.op.housekeeping.remove_chunks(request)

    @_rpc
    async def QueryLastChunk(self, request: storage_pb2.QueryLastChunkRequest,
                             context: Any) -> storage_pb2.QueryLastChunkResponse:
        return await self.op.housekeeping.query_last_chunk(request)

    @_rpc
    async def TargetStats(self, request: storage_pb2.TargetStatsRequest,
                          context: Any) -> storage_pb2.TargetStatsResponse:
        return await self.op.housekeeping.target_stats()

    @_rpc
    async def SyncDump(self, request: storage_pb2.SyncDumpRequest, context: Any) -> storage_pb2.SyncDumpResponse:
        return await self.op.sync.sync_dump(request)

    @_rpc
    async def SyncDone(self, request: storage_pb2.SyncDoneRequest, context: Any) -> storage_pb2.SyncDoneResponse:
        return await self.op.sync.sync_done(request)


def add_storage_servicer(servicer: StorageServicer, server: grpc.aio.Server) -> None:
    """Register the Storage methods with lenient decoding."""
    add_servicer(storage_pb2, "Storage", servicer, server, methods=_IMPLEMENTED)
