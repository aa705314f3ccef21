"""What the hostile scenarios wrote and how it is judged: the shared files' geometry
(`Shape`: CHUNKS_PER_FILE chunks of SLOTS slots), every payload written to each slot
(`SlotWrite`), the load's report, and the two judges that run on them:

- `slot_problem`: is a whole shared file a state the writes allow? Every slot must hold
  the payload of a write issued to that slot (never a mix, never bytes of no write);
  once all writes ended, an acknowledged payload must not have been overtaken by an
  acknowledged write of the slot that began after its acknowledgement;
- `Witness`: what replicas answered to raw reads of one chunk, judged as they come.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import crc32c

SLOTS = 4
CHUNKS_PER_FILE = 2  # few chunks, so writers meet on them often
SHARED = tuple(f"/hostile/s{i}" for i in range(2))
INF = float("inf")


@dataclass(frozen=True)
class Shape:
    """The shared files' geometry: the cluster's chunk size, each chunk in SLOTS slots."""

    chunk: int

    @property
    def slot(self) -> int:
        return self.chunk // SLOTS

    @property
    def file_size(self) -> int:
        return CHUNKS_PER_FILE * self.chunk


@dataclass
class SlotWrite:
    """One write's payload for one slot: `end` is its acknowledgement (inf: none)."""

    payload: bytes
    began: float
    who: str
    end: float = INF

    @property
    def acked(self) -> bool:
        return self.end < INF


@dataclass
class OwnFile:
    """A writer's own file: the bytes of its last acknowledged write, and whether a
    failed write came after it (then its bytes are uncertain)."""

    data: bytes = b""
    uncertain: bool = True


@dataclass
class LoadReport:
    shape: Shape
    acked: int
    failed: int
    cancelled: int  # writes whose deadline passed (raw calls and the hasty client)
    reads: int
    bad_reads: list[str]
    slots: dict[tuple[str, int, int], list[SlotWrite]]
    own: dict[str, OwnFile]
    failures: list[str] = field(default_factory=list)
    witnessed: int = 0  # raw per-replica reads by the witness
    witness_problems: list[str] = field(default_factory=list)


class Witness:
    """What replicas answered to raw reads of one chunk, judged as they come:

    - one version, one content: two answers naming the same commit version with
      different bytes mean two replicas committed different writes under one version
      (on the shared files nothing ever removes a chunk, so versions only grow);
    - reads never go back: an answer older than one that was complete before this
      read began (from any replica) means the chain served a version and then an
      older one (CRAQ reads are linearizable: the tail's commit orders them);
    - no corrupt chunk (DATA_LOSS: the committed bytes fail their CRC32C) and no
      internal error from a serving replica.

    These catch a divergence even when a later whole-chunk write heals it before the
    end."""

    def __init__(self) -> None:
        self.reads = 0
        self.problems: list[str] = []
        self._contents: dict[tuple[tuple[str, int], int], tuple[int, int]] = {}  # (chunk, version) -> (crc, target)
        self._done: dict[tuple[str, int], list[tuple[float, int, int]]] = {}  # chunk -> [(end, version, target)]

    def saw(self, chunk: tuple[str, int], target: int, version: int, data: bytes, began: float, end: float) -> None:
        self.reads += 1
        crc = crc32c.crc32c(data)
        first = self._contents.setdefault((chunk, version), (crc, target))
        if first[0] != crc:
            self._problem(f"{chunk[0]} chunk {chunk[1]}: version {version} is {crc:#010x} on target {target} "
                          f"but {first[0]:#010x} on target {first[1]}")
        history = self._done.setdefault(chunk, [])
        before = [(v, t) for e, v, t in history if e < began]
        if before:
            newest = max(before)
            if version < newest[0]:
                self._problem(f"{chunk[0]} chunk {chunk[1]}: target {target} answered version {version} after "
                              f"target {newest[1]} had answered {newest[0]}: a read went back")
        history.append((end, version, target))
        if len(history) > 64:
            newest = max(history, key=lambda seen: seen[1])  # the highest version stays the reference
            del history[:-32]
            if newest not in history:
                history.insert(0, newest)

    def failed(self, chunk: tuple[str, int], target: int, why: str) -> None:
        self._problem(f"{chunk[0]} chunk {chunk[1]}: target {target} answered {why}"[:300])

    def _problem(self, line: str) -> None:
        if len(self.problems) < 20 and line not in self.problems:
            self.problems.append(line)


def slot_problem(path: str, data: bytes, slots: dict[tuple[str, int, int], list[SlotWrite]], shape: Shape, *,
                 judge_order: bool = True) -> str | None:
    """Why `data` (the whole shared file) is not a state the writes allow, or None.

    Every slot must hold the payload of a write of that slot. With judge_order (the
    state after all writes ended), an acknowledged payload must not have been overtaken
    by an acknowledged write of the slot that began after its acknowledgement."""
    if len(data) != shape.file_size:
        return f"{path}: {len(data)} bytes, expected {shape.file_size}"
    for chunk in range(CHUNKS_PER_FILE):
        for slot in range(SLOTS):
            at = chunk * shape.chunk + slot * shape.slot
            held = data[at:at + shape.slot]
            writes = slots[(path, chunk, slot)]
            match = next((w for w in writes if w.payload == held), None)
            if match is None:
                what = "zeros" if not held.strip(b"\0") else "bytes of no write"
                return f"{path} chunk {chunk} slot {slot}: {what}"
            if not judge_order or not match.acked:
                continue
            later = [w for w in writes if w.acked and w.began > match.end]
            if later:
                return (f"{path} chunk {chunk} slot {slot}: holds {match.who}'s write acknowledged at "
                        f"{match.end:.3f}, but {later[-1].who}'s write began at {later[-1].began:.3f} after it "
                        f"and was acknowledged: lost")
    return None
