"""Requests off the write path: chunk GC (RemoveChunks), file-length recovery
(QueryLastChunk) and target statistics. craq.Operator serves them through its
`housekeeping` attribute; they need only this node's targets (localtargets.py), none
of the replication rules.

GC needs no lease and no chain-version match: removing a deleted file's chunks is
safe in any chain state, and a target that was down when the file was deleted is
cleared when it returns (the collector retries until every target answered).
Removal first marks the file gone on the target (after that, every prepare of its
chunks is refused, checked in the prepare's own LMDB transaction), then removes
each chunk under its chunk lock, so no update or resync send that started earlier
can re-create a chunk behind the collector's back (issue 15, defect 6).
"""

from __future__ import annotations

from emberfs.common.errors import InvalidArgument
from emberfs.proto import storage_pb2

from .localtargets import LocalTargets

__all__ = ["Housekeeping"]


class Housekeeping:
    def __init__(self, targets: LocalTargets) -> None:
        self.targets = targets

    async def remove_chunks(self, req: storage_pb2.RemoveChunksRequest) -> storage_pb2.RemoveChunksResponse:
        # GC of a deleted file is safe in any chain state: no version match needed.
        chain = await self.targets.chain(req.chain_id, req.chain_version, strict=False)
        if req.target_id == 0:
            raise InvalidArgument("RemoveChunks must name its target_id")
        target = self.targets.named(chain, req.target_id)
        return await self.targets.finish(self._remove(target, req.inode_id))

    async def _remove(self, target: int, inode_id: int) -> storage_pb2.RemoveChunksResponse:
        targets = self.targets
        store = targets.store_of(target)
        await targets.tio(target, store.mark_gone, inode_id)
        metas = await targets.tio(target, lambda: list(store.list_chunks(inode_id, include_pending=True)))
        removed = 0
        for meta in metas:
            async with targets.locks.hold((target, meta.chunk_id)):
                now = await targets.tio(target, store.meta, meta.chunk_id)
                await targets.tio(target, store.purge, meta.chunk_id)
            removed += now.exists
        return storage_pb2.RemoveChunksResponse(removed=removed)

    async def query_last_chunk(self, req: storage_pb2.QueryLastChunkRequest
                               ) -> storage_pb2.QueryLastChunkResponse:
        self.targets.health.lease.check()
        chain = await self.targets.chain(req.chain_id, req.chain_version)
        target = self.targets.named(chain, req.target_id)
        meta = await self.targets.tio(target, self.targets.store_of(target).last_chunk, req.inode_id)
        if meta is None:
            return storage_pb2.QueryLastChunkResponse(found=False)
        return storage_pb2.QueryLastChunkResponse(found=True, chunk_index=meta.chunk_id.chunk_index,
                                                  chunk_length=meta.length)

    async def target_stats(self) -> storage_pb2.TargetStatsResponse:
        view = self.targets.routing.view
        out = []
        for target_id, store in sorted(self.targets.stores.items()):
            stats = await self.targets.run_io(store.stats)
            info = view.targets.get(target_id)
            out.append(storage_pb2.TargetStat(
                target_id=target_id, chain_id=info.chain_id if info else 0, chunks=stats.chunks,
                bytes=stats.bytes, capacity_bytes=stats.capacity_bytes, free_bytes=stats.free_bytes,
            ))
        return storage_pb2.TargetStatsResponse(targets=out)
