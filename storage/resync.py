"""The resync worker: a SERVING target brings its SYNCING successor up to date
(3FS-style, predecessor-driven; docs/ARCHITECTURE.md "Processes").

`ResyncWorker.run` watches routing. `syncdiff.sync_jobs` names the jobs this node
owes: one per (chain, syncing target), run by the local target right before it on
the write path, and restarted whenever the chain version moves (the successor
refuses requests naming an older version anyway). One job:

    drain                    wait until no update admitted under an older chain
                             version is in progress here (those forward along the
                             old chain, which lacks the successor: checks.py)
    SyncDump(successor)      its committed chunk metas and tombstones (it drops its
                             pending versions: replication.sync_start)
    sync_diff(mine, theirs)  chunks to SEND, chunks to REMOVE
    for each (bounded concurrency), under MY chunk lock:
        re-read my chunk     a live write may have changed it since the listing
        Forward              REPLACE of my whole committed chunk at its version, my
                             tombstone as a REMOVE at its version, or (no record
                             here) a REMOVE at PURGE_VERSION; applied with sync
                             semantics (the successor is SYNCING); the data CRC32C
                             is checked on arrival and the successor's ack against
                             mine here (replication.check_ack)
    SyncDone(successor)      it reports LOCAL_UPTODATE; the manager makes it SERVING

Holding the chunk lock orders each send against live writes of the same chunk, which
reach the syncing successor as whole-chunk REPLACEs (craq.py), so whichever comes
last carries the newest committed bytes. A failed attempt is logged and retried
after a pause while the job is still owed; a cancelled job sends nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from emberfs.common.chainstate import Chain
from emberfs.common.errors import ChunkGone, EmberError, ReplicaDiverged, Unavailable
from emberfs.proto import common_pb2, storage_pb2

from .checks import MIN_CHUNK_SIZE
from .chunkstore import ChunkStore
from .craq import Operator
from .forwarding import FORWARD_TIMEOUT_S
from .records import ChunkId, UpdateKind
from .replication import ABSENT, Digest, check_ack
from .syncdiff import SyncMeta, sync_diff, sync_jobs

__all__ = ["RETRY_DELAY_S", "SEND_CONCURRENCY", "ResyncWorker"]

log = logging.getLogger("emberfs.storage.resync")

SEND_CONCURRENCY = 8   # chunks in flight per job: keeps the link busy, bounds memory
DUMP_TIMEOUT_S = 60.0
RETRY_DELAY_S = 0.5
DRAIN_TIMEOUT_S = FORWARD_TIMEOUT_S + 5.0  # an old update ends by then: its forward times out
DRAIN_POLL_S = 0.01
POLL_S = 1.0           # re-check jobs this often even without a routing change

JobKey = tuple[int, int]  # (chain_id, syncing target)


@dataclass
class _Tally:
    sent: int = 0
    removed: int = 0
    bytes: int = 0


class ResyncWorker:
    def __init__(self, op: Operator) -> None:
        self.op = op
        self.targets = op.targets
        self._jobs: dict[JobKey, tuple[int, asyncio.Task[None]]] = {}

    async def run(self) -> None:
        changed = getattr(self.targets.routing, "changed", None)
        try:
            while True:
                self.reconcile()
                version = self.targets.routing.view.version
                try:
                    if changed is not None:
                        await asyncio.wait_for(changed(version), POLL_S)
                    else:
                        await asyncio.sleep(POLL_S)
                except TimeoutError:
                    pass
        finally:
            tasks = [task for _, task in self._jobs.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def reconcile(self) -> None:
        """Start owed jobs; cancel those no longer owed or owed at another version.
        A finished job stays recorded while owed at its version, so it is not rerun
        while the manager has yet to promote the synced target."""
        view = self.targets.routing.view
        wanted = sync_jobs(view.chains.values(), self.targets.stores, self.targets.health.failed)
        for key, (version, task) in list(self._jobs.items()):
            want = wanted.get(key)
            if want is None or want[1] != version:
                if not task.done():
                    task.cancel()
                    log.info("resync of chain %d to target %d at v%d cancelled: the chain moved", key[0], key[1],
                             version)
                del self._jobs[key]
        for key, (source, version) in wanted.items():
            if key not in self._jobs:
                task = asyncio.get_running_loop().create_task(self._job(key, source, version))
                self._jobs[key] = (version, task)

    async def _job(self, key: JobKey, source: int, version: int) -> None:
        chain_id, dest = key
        while True:
            chain = self.targets.routing.view.chains.get(chain_id)
            if chain is None or chain.chain_version != version:
                return
            try:
                await self.sync_once(chain, source, dest)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a peer error, a stale version, a disk error: try again
                why = exc.message if isinstance(exc, EmberError) else repr(exc)
                log.warning("resync chain %d v%d: target %d -> %d failed: %s; retrying in %.1f s",
                            chain_id, version, source, dest, why, RETRY_DELAY_S)
                await asyncio.sleep(RETRY_DELAY_S)

    async def sync_once(self, chain: Chain, source: int, dest: int) -> _Tally:
        op, targets = self.op, self.targets
        targets.health.lease.check()
        store = targets.store_of(source)
        stub = op.peers.stub(targets.routing.view.address_of(dest))
        started = time.monotonic()
        log.info("resync chain %d v%d: target %d -> target %d starting", chain.chain_id, chain.chain_version,
                 source, dest)
        while op.inflight.older_than(chain.chain_id, chain.chain_version):
            if time.monotonic() - started > DRAIN_TIMEOUT_S:
                raise Unavailable(f"updates admitted before chain {chain.chain_id} v{chain.chain_version} still "
                                  f"in progress after {DRAIN_TIMEOUT_S:g} s")
            await asyncio.sleep(DRAIN_POLL_S)
        # As the tail, first commit what no update owns: a former tail may have served it.
        taken = await op.take_over_all(chain, source)
        if taken:
            log.info("resync chain %d v%d: target %d took over %d pending versions before listing",
                     chain.chain_id, chain.chain_version, source, taken)
        dump = await stub.SyncDump(storage_pb2.SyncDumpRequest(
            header=common_pb2.RequestHeader(), chain_id=chain.chain_id, chain_version=chain.chain_version,
            target_id=dest), timeout=DUMP_TIMEOUT_S, wait_for_ready=True)  # it may have just restarted
        theirs = [SyncMeta(ChunkId(c.chunk.inode_id, c.chunk.chunk_index), c.commit_version, c.length, c.crc32c,
                           not c.tombstone) for c in dump.chunks]
        mine = await targets.tio(source, lambda: [SyncMeta(m.chunk_id, m.commit_version, m.length, m.crc32c, m.exists)
                                                  for m in store.list_chunks(tombstones=True)])
        plan = sync_diff(mine, theirs)
        log.info("resync chain %d v%d: target %d -> %d: %d chunks to send, %d to remove, %d already equal",
                 chain.chain_id, chain.chain_version, source, dest, plan.sends, plan.removes, plan.unchanged)
        tally = _Tally()
        todo = iter(plan.ops)

        async def sender() -> None:
            for chunk, _ in todo:  # one shared iterator: each chunk goes to one sender
                await self._sync_chunk(chain, source, dest, store, chunk, tally)

        senders = [asyncio.ensure_future(sender()) for _ in range(min(SEND_CONCURRENCY, len(plan.ops)))]
        try:
            await asyncio.gather(*senders)
        except BaseException:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            raise
        await stub.SyncDone(storage_pb2.SyncDoneRequest(
            header=common_pb2.RequestHeader(), chain_id=chain.chain_id, chain_version=chain.chain_version,
            target_id=dest, chunks_sent=tally.sent, chunks_removed=tally.removed), timeout=DUMP_TIMEOUT_S)
        seconds = max(time.monotonic() - started, 1e-9)
        mib = tally.bytes / (1 << 20)
        log.info("resync chain %d v%d: target %d -> %d done: %d chunks sent (%.2f MiB), %d removed, "
                 "%d already equal, in %.2f s (%.1f MiB/s)", chain.chain_id, chain.chain_version, source, dest,
                 tally.sent, mib, tally.removed, plan.unchanged, seconds, mib / seconds)
        return tally

    async def _sync_chunk(self, chain: Chain, source: int, dest: int, store: ChunkStore, chunk: ChunkId,
                          tally: _Tally) -> None:
        op, targets = self.op, self.targets
        targets.health.lease.check()
        async def locked() -> storage_pb2.WriteRequest:
            async with targets.locks.hold((source, chunk)):
                meta = await targets.tio(source, store.meta, chunk)
                update = await op.whole_chunk_update(chain, source, store, chunk, MIN_CHUNK_SIZE, version=None)
                version = meta.commit_version  # PURGE_VERSION (0) when this target has no record
                sent = Digest(True, len(update.data), update.crc32c) if update.kind == UpdateKind.REPLACE else ABSENT
                reply = await op.forwarder.send_forward(chain, storage_pb2.ForwardRequest(
                    update=update, update_version=version, from_target=source, to_target=dest))
                acked = Digest(True, reply.chunk_length, reply.chunk_crc32c) if reply.chunk_exists else ABSENT
                verdict = check_ack(version, sent, reply.commit_version, acked)
                if not verdict.ok:
                    raise ReplicaDiverged(f"resync of chunk {tuple(chunk)} to target {dest}: {verdict.why}")
                return update

        try:
            update = await targets.finish(locked())  # a cancelled job never leaves a send half-done under the lock
        except ChunkGone:
            return  # deleted and collected on the successor meanwhile: GC removes ours too
        if update.kind == UpdateKind.REMOVE:
            tally.removed += 1
            return
        tally.sent += 1
        tally.bytes += len(update.data)
