"""Operator requests off the write path: chunk GC (RemoveChunks), file-length
recovery (QueryLastChunk) and target statistics. A mixin of craq.Operator, kept
apart so the CRAQ module holds only the replication rules.

GC needs no lease and no chain-version match: removing a deleted file's chunks is
safe in any chain state, and a target that was down when the file was deleted is
cleared when it returns (the collector retries until every target answered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emberfs.common.errors import InvalidArgument
from emberfs.proto import storage_pb2

if TYPE_CHECKING:
    from .craq import Operator

__all__ = ["Housekeeping"]


class Housekeeping:
    async def remove_chunks(self: Operator, req: storage_pb2.RemoveChunksRequest) -> storage_pb2.RemoveChunksResponse:
        # GC of a deleted file is safe in any chain state: no version match needed.
        chain = await self.chain(req.chain_id, req.chain_version, strict=False)
        if req.target_id == 0:
            raise InvalidArgument("RemoveChunks must name its target_id")
        target = self._my_target(chain, req.target_id)
        removed = await self.tio(target, self.store_of(target).remove_inode, req.inode_id)
        return storage_pb2.RemoveChunksResponse(removed=removed)

    async def query_last_chunk(self: Operator, req: storage_pb2.QueryLastChunkRequest
                               ) -> storage_pb2.QueryLastChunkResponse:
        self.health.lease.check()
        chain = await self.chain(req.chain_id, req.chain_version)
        target = self._my_target(chain, req.target_id)
        meta = await self.tio(target, self.store_of(target).last_chunk, req.inode_id)
        if meta is None:
            return storage_pb2.QueryLastChunkResponse(found=False)
        return storage_pb2.QueryLastChunkResponse(found=True, chunk_index=meta.chunk_id.chunk_index,
                                                  chunk_length=meta.length)

    async def target_stats(self: Operator) -> storage_pb2.TargetStatsResponse:
        view = self.routing.view
        out = []
        for target_id, store in sorted(self.stores.items()):
            stats = await self._io(store.stats)
            info = view.targets.get(target_id)
            out.append(storage_pb2.TargetStat(
                target_id=target_id, chain_id=info.chain_id if info else 0, chunks=stats.chunks,
                bytes=stats.bytes, capacity_bytes=stats.capacity_bytes, free_bytes=stats.free_bytes,
            ))
        return storage_pb2.TargetStatsResponse(targets=out)
