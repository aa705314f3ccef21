"""The syncing target's side of a resync (3FS: the successor answers its
predecessor's dump request and is told when the sync is done). craq.Operator
serves it through its `sync` attribute; it needs only this node's targets
(localtargets.py).

- SyncDump: the committed chunks and tombstones of a target that is SYNCING in the
  named chain version, after it dropped its pending versions (replication.sync_start:
  what it must hold is what its predecessor sends; a stale pending version would
  otherwise be taken over once it is the tail); the predecessor diffs them against
  its own (syncdiff.py).
- The chunks themselves arrive as ordinary Forwards (REPLACE/REMOVE, applied with
  decide_update's sync row).
- SyncDone: the target is marked synced at that chain version (localstate.py), so
  the agent reports LOCAL_UPTODATE and heartbeats at once; the manager then makes
  it SERVING. Both are refused unless the target is SYNCING at exactly the chain
  version named (the strict chain check refreshes routing when the request is
  newer), and while this server's lease has expired.
"""

from __future__ import annotations

import logging

from emberfs.common.chainstate import Chain, PublicState
from emberfs.common.errors import FailedPrecondition, InvalidArgument
from emberfs.proto import storage_pb2

from .localtargets import LocalTargets
from .replication import sync_start

__all__ = ["SyncReceiver"]

log = logging.getLogger("emberfs.storage.resync")


class SyncReceiver:
    def __init__(self, targets: LocalTargets) -> None:
        self.targets = targets

    async def _syncing_target(self, chain_id: int, chain_version: int, target_id: int) -> tuple[Chain, int]:
        if target_id == 0:
            raise InvalidArgument("a sync request must name its target_id")
        self.targets.health.lease.check()
        chain = await self.targets.chain(chain_id, chain_version)
        target = self.targets.named(chain, target_id)
        state = chain.state_of(target)
        if state != PublicState.SYNCING:
            raise FailedPrecondition(f"target {target} is {state.name if state else 'absent'} in chain "
                                     f"{chain_id} (version {chain.chain_version}), not SYNCING")
        self.targets.store_of(target)  # a failed target takes no sync
        return chain, target

    async def sync_dump(self, req: storage_pb2.SyncDumpRequest) -> storage_pb2.SyncDumpResponse:
        _, target = await self._syncing_target(req.chain_id, req.chain_version, req.target_id)
        targets = self.targets
        store = targets.store_of(target)
        for chunk in await targets.tio(target, store.pending_chunks):
            async with targets.locks.hold((target, chunk)):
                meta = await targets.tio(target, store.meta, chunk)
                if meta.pending_version is not None and sync_start(meta.replica).pending_version is None:
                    await targets.tio(target, store.abort, chunk, meta.pending_version)
        metas = await targets.tio(target, lambda: list(store.list_chunks(tombstones=True)))
        log.info("target %d: sync dump of %d committed chunks for chain %d v%d", target, len(metas),
                 req.chain_id, req.chain_version)
        return storage_pb2.SyncDumpResponse(chunks=[
            storage_pb2.ChunkMeta(
                chunk=storage_pb2.ChunkId(inode_id=m.chunk_id.inode_id, chunk_index=m.chunk_id.chunk_index),
                commit_version=m.commit_version, length=m.length, crc32c=m.crc32c, tombstone=not m.exists,
            ) for m in metas
        ])

    async def sync_done(self, req: storage_pb2.SyncDoneRequest) -> storage_pb2.SyncDoneResponse:
        chain, target = await self._syncing_target(req.chain_id, req.chain_version, req.target_id)
        self.targets.health.mark_synced(target, chain.chain_version)
        log.info("target %d: resync of chain %d v%d done (%d chunks received, %d removed); reporting up to date",
                 target, chain.chain_id, chain.chain_version, req.chunks_sent, req.chunks_removed)
        return storage_pb2.SyncDoneResponse()
