"""The invariants, checked after every step (I1, I2, I5), at every completed read
(I3) and after healing at the end of a schedule (I4).

Definitions, per chunk:
- I1 (files not deleted): let (v, d) be the highest version any client got acknowledged (for any write
  or REMOVE). Every target the manager lists SERVING has a committed version >= v,
  and if it is exactly v, its bytes are d. (A later write may have committed on
  some replicas and not yet on others: that is allowed.)
- I2: no two targets (any state; their disks) hold the same committed version with
  different bytes (compared by digest: exists, length, CRC32C).
- I3: a read never returns a version older than one a read (by any client) had
  already returned when this read was issued. (Reads that overlap in time may
  complete in either order: linearizability asks nothing more.)
- I4 (heal): with faults off, every node restarted, messages delivered and the
  manager and resyncs left to converge, a fresh write to every chunk of a live file
  is acknowledged within a bounded number of steps, after which every target is
  SERVING and all hold the same committed version and bytes, none pending.
- I5: once GC of a file has been answered by every target, no target holds any
  record (committed, tombstone or pending) of the file's chunks, ever again.

Legacy rules drop a chunk's record on REMOVE, so its versions restart at 1: there,
an acknowledged REMOVE starts a new *epoch* of the chunk, acks and reads issued in
an older epoch are not compared with newer ones, and I1 cannot tell a removed chunk
from a lost one, so it skips replicas without a record (I4 sees what that costs).
Current rules never need either allowance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emberfs.common.chainstate import PublicState

from .model import ChunkId, Violation
from .rules import Digest

if TYPE_CHECKING:
    from .world import World


class Checker:
    def __init__(self, world: World) -> None:
        self.world = world
        self.epochs: dict[ChunkId, int] = {}
        self.newest_ack: dict[ChunkId, tuple[int, Digest]] = {}
        self.newest_read: dict[ChunkId, tuple[int, Any]] = {}
        self.gc_done: set[int] = set()
        self.acks = 0
        self.reads = 0

    def memory(self) -> tuple[Any, ...]:
        return (sorted(self.epochs.items()), sorted(self.newest_ack.items()),
                sorted((c, v) for c, (v, _) in self.newest_read.items()), sorted(self.gc_done))

    def epoch(self, chunk: ChunkId) -> int:
        return self.epochs.get(chunk, 0)

    # -- events ---------------------------------------------------------------

    def acked(self, chunk: ChunkId, epoch: int, ack: tuple[int, Digest], remove: bool) -> None:
        self.acks += 1
        if epoch != self.epoch(chunk):
            return
        if remove and not self.world.rules.tombstones:
            self.epochs[chunk] = epoch + 1
            self.newest_ack.pop(chunk, None)
            self.newest_read.pop(chunk, None)
            return
        if ack[0] > self.newest_ack.get(chunk, (0, None))[0]:
            self.newest_ack[chunk] = ack

    def read_floor(self, chunk: ChunkId) -> tuple[int, Any]:
        """What a read issued now must not go below: the newest read completed so far."""
        return self.newest_read.get(chunk, (0, None))

    def read_done(self, chunk: ChunkId, epoch: int, floor: tuple[int, Any], got: tuple[int, Digest],
                  client: Any) -> None:
        self.reads += 1
        if epoch != self.epoch(chunk):
            return
        if got[0] < floor[0]:
            raise Violation("I3", f"chunk {chunk}: client {client} read v{got[0]}, issued after client {floor[1]} "
                                  f"had read v{floor[0]}")
        if got[0] > self.newest_read.get(chunk, (0, None))[0]:
            self.newest_read[chunk] = (got[0], client)

    def gc_progress(self, file: int) -> None:
        if len(self.world.gc_answered[file]) == len(self.world.nodes):
            self.gc_done.add(file)

    # -- state invariants -------------------------------------------------------

    def check_state(self) -> None:
        world = self.world
        for chunk, (v, digest) in self.newest_ack.items():
            if chunk[0] in world.deleted:
                continue  # the file is being deleted: I5 takes over
            for t in world.chain.serving:
                r = world.nodes[t].replica(chunk)
                if r.commit_version == 0 and not world.rules.tombstones:
                    continue  # legacy: a REMOVE (acknowledged or not yet) leaves no version to compare
                if r.commit_version < v or (r.commit_version == v and r.committed != digest):
                    raise Violation("I1", f"chunk {chunk}: v{v} {digest} was acknowledged but SERVING target "
                                          f"{t} has committed v{r.commit_version} {r.committed}")
        seen: dict[tuple[ChunkId, int], tuple[int, Digest]] = {}
        for node in world.nodes.values():
            for chunk, stored in node.disk.items():
                r = stored.replica
                if r.commit_version == 0:
                    continue
                other = seen.setdefault((chunk, r.commit_version), (node.nid, r.committed))
                if other[1] != r.committed:
                    raise Violation("I2", f"chunk {chunk} v{r.commit_version}: target {other[0]} holds "
                                          f"{other[1]} but target {node.nid} holds {r.committed}")
        for file in self.gc_done:
            for node in world.nodes.values():
                for chunk in node.disk:
                    if chunk[0] == file:
                        raise Violation("I5", f"file {file} was collected but target {node.nid} holds a "
                                              f"record of chunk {chunk}: {node.disk[chunk]}")

    def check_healed(self) -> None:
        """After heal(): everyone SERVING and identical (I4's second half)."""
        world = self.world
        states = {t.target_id: t.state for t in world.chain.targets}
        if any(s != PublicState.SERVING for s in states.values()):
            raise Violation("I4", f"after healing, the chain is {world.chain}")
        chunks = sorted({c for n in world.nodes.values() for c in n.disk})
        for chunk in chunks:
            held = {n.nid: n.replica(chunk) for n in world.nodes.values()}
            if len({(r.commit_version, r.committed, r.pending_version) for r in held.values()}) != 1:
                raise Violation("I4", f"after healing, chunk {chunk} differs: {held}")
