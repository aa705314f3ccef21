"""Plain records of the simulated cluster: the scope of a run, a node's disk and
memory, a running handler (a task), a message, a client.

Identifiers are made from what caused them, not from a global counter (a call is
(caller task, n-th call of that task), a handler task is named by the call it
answers), so two schedules that reach the same state by commuting steps build the
same identifiers and the exhaustive search can recognise the state (`fingerprint`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from emberfs.common.chainstate import Chain

from .rules import Replica

ChunkId = tuple[int, int]  # (file, chunk index)
Result = tuple[str, Any]   # ("ok", value) or ("err", why)
Choice = tuple[Any, ...]   # one scheduler decision, e.g. ("deliver", message id)


@dataclass(frozen=True)
class Scope:
    """What one run may do. Budgets bound the faults a schedule injects."""

    nodes: int = 3
    scripts: tuple[tuple[tuple[str, ChunkId], ...], ...] = ((("write", (1, 0)),), (("write", (1, 0)),))
    """One script per client: ("write" | "remove" | "read", chunk) operations, in order."""
    crashes: int = 1
    restarts: bool = True
    """A crashed node may come back before healing (off: it stays down until then)."""
    quick_restarts: bool = True
    """It may come back inside the heartbeat timeout, before the manager noticed."""
    timeouts: bool = True
    """The manager may notice a crashed node (heartbeat timeout); off: every restart
    comes back inside the timeout."""
    drops: int = 0
    cancels: int = 0
    gc_files: tuple[int, ...] = ()
    """Files the collector may delete (GC) once during the run."""
    gc_when_idle: bool = False
    """GC starts only once every client has finished (no writer in flight)."""
    async_io: bool = False
    """Store calls complete as separate steps (needed to model a cancelled handler
    whose I/O lands later); off keeps the exhaustive search small."""
    max_retries: int = 2
    max_steps: int = 250
    heal: bool = True
    routing_delay: bool = True
    """Routing reaches each node as a message (any delay); off: the manager's push
    lands on every live node in the step that changed the chain."""
    until_clients_done: bool = False
    """Exhaustive search: a schedule ends (and heals, deterministically) once every
    client has finished its script; only the orders while writes run are explored."""
    reads_everywhere: bool = True
    """A read may go to any SERVING replica (else: only the tail)."""

    @property
    def chunks(self) -> tuple[ChunkId, ...]:
        seen = {chunk for script in self.scripts for _, chunk in script}
        return tuple(sorted(seen))


@dataclass(frozen=True, slots=True)
class Stored:
    """One chunk's record on a target's disk (LMDB in the real store)."""

    replica: Replica
    history: tuple[tuple[bytes, int], ...] = ()
    """(request key, version) of recent client requests that committed here."""
    pending_key: bytes = b""
    """The request behind the pending version (re-driven with it)."""


@dataclass
class Task:
    """A running handler on a node: a generator that yields what it waits for."""

    tid: Any
    kind: str
    gen: Generator[Any, Any, Result]
    origin: tuple[Any, ...]
    inputs: list[Any] = field(default_factory=list)
    """Every value sent into the generator: with `origin`, it fixes the task's state."""
    callers: list[Any] = field(default_factory=list)
    admitted: int | None = None
    """The chain version the update was admitted under (the resync drains older ones)."""
    blocked: tuple[Any, ...] | None = None
    reply_lost: bool = False
    stopping: bool = False
    seq: int = 0


@dataclass
class Node:
    """A storage server with one target (target id == node id) in the one chain."""

    nid: int
    disk: dict[ChunkId, Stored] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)
    """Files collected here (current rules: a mark on disk that refuses prepares)."""
    alive: bool = True
    registered: bool = True
    incarnation: int = 0
    # Memory, lost in a crash:
    view: Chain | None = None
    synced_at: int | None = None
    tasks: dict[Any, Task] = field(default_factory=dict)
    locks: dict[ChunkId, Any] = field(default_factory=dict)
    waiters: dict[ChunkId, list[Any]] = field(default_factory=dict)
    io_queue: list[tuple[Any, Any, tuple[Any, ...]]] = field(default_factory=list)
    recent: dict[bytes, Result] = field(default_factory=dict)
    inflight_keys: dict[bytes, Any] = field(default_factory=dict)
    job: tuple[int, int] | None = None
    """The resync this node owes: (syncing target, chain version)."""
    job_task: Any = None
    job_done: bool = False
    job_runs: int = 0

    def replica(self, chunk: ChunkId) -> Replica:
        stored = self.disk.get(chunk)
        return stored.replica if stored is not None else Replica()

    def stored(self, chunk: ChunkId) -> Stored:
        return self.disk.get(chunk) or Stored(Replica())

    def put(self, chunk: ChunkId, stored: Stored) -> None:
        if stored.replica.has_record:
            self.disk[chunk] = stored
        else:
            self.disk.pop(chunk, None)


@dataclass(frozen=True, slots=True)
class Msg:
    mid: Any
    dst: tuple[Any, ...]
    """("node", id, incarnation at send) / ("client", id) / ("gc", file, target)."""
    body: tuple[Any, ...]


@dataclass
class Client:
    cid: Any
    script: tuple[tuple[str, ChunkId], ...]
    pc: int = 0
    attempt: int = 0
    call: Any = None
    epoch: int = 0
    """The chunk's checker epoch when the operation was issued (checks.py)."""
    read_floor: tuple[int, Any] = (0, None)
    """I3: the newest read completed when this read was issued (checks.py)."""
    retries: int = 2
    healer: bool = False
    """The healing client of I4: never skipped, and its outcomes are kept."""
    outcomes: list[tuple[Any, Result]] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return self.call is not None

    @property
    def done(self) -> bool:
        return self.pc >= len(self.script)


class Violation(AssertionError):
    """An invariant broke; `invariant` is "I1".."I5"."""

    def __init__(self, invariant: str, message: str) -> None:
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.message = message
