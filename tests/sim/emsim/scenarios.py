"""Named scopes ("profiles") the tests, the search and replay.py share.

`exhaustive`: the small scope explored completely. `random`: a scope drawn from the
seed (clients' scripts, fault budgets), so a seed alone replays a run. The `defect-*`
profiles aim the random search at one pre-fix defect each (issue 15): each allows
only the fault that defect needs, so what the search finds is that defect.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from .model import ChunkId, Scope

A: ChunkId = (1, 0)
B: ChunkId = (1, 1)
C: ChunkId = (2, 0)


def exhaustive(seed: int) -> Scope:
    """3 replicas, 2 writes to one chunk (one client, in turn), 1 crash of any node at
    any moment (its pending version whole or torn), a restart before or after the
    manager's timeout, the manager's transitions and the resync, every order; a
    schedule ends once the writes are done and then heals deterministically."""
    return Scope(scripts=((("write", A), ("write", A)),), crashes=1, max_retries=0, routing_delay=False,
                 until_clients_done=True, max_steps=400)


def exhaustive_concurrent(seed: int) -> Scope:
    """2 clients writing one chunk at once, 1 crash; the crashed node stays down until
    the schedule heals (restarts while the writes run are in `exhaustive-full`)."""
    return replace(exhaustive(seed), scripts=((("write", A),), (("write", A),)), restarts=False)


def exhaustive_full(seed: int) -> Scope:
    """`exhaustive-concurrent` with restarts at any moment, inside the heartbeat
    timeout or after it (~80k states, a minute or two: opt-in)."""
    return replace(exhaustive_concurrent(seed), restarts=True)


def random_scope(seed: int) -> Scope:
    rng = random.Random(seed * 7919 + 1)
    clients = rng.choice((2, 3))
    ops = ("write", "write", "write", "read", "read", "remove")
    scripts = tuple(tuple((rng.choice(ops), rng.choice((A, A, B, C))) for _ in range(rng.randint(2, 4)))
                    for _ in range(clients))
    return Scope(scripts=scripts, crashes=rng.randint(0, 2), drops=rng.randint(0, 2), cancels=rng.randint(0, 2),
                 gc_files=(2,) if rng.random() < 0.5 else (), async_io=rng.random() < 0.7,
                 timeouts=rng.random() < 0.8, max_steps=220)


def defect_restart(seed: int) -> Scope:
    """(1) a node restarts inside the heartbeat timeout; two writers."""
    return Scope(scripts=((("write", A), ("write", A)), (("write", A),)), crashes=1, timeouts=False,
                 max_steps=200)


def defect_cancel(seed: int) -> Scope:
    """(2) handlers cancelled at their deadline while their store calls are queued."""
    return Scope(scripts=((("write", A), ("write", A)), (("write", A), ("write", A))), crashes=0, cancels=2,
                 async_io=True, max_steps=200)


def defect_remove(seed: int) -> Scope:
    """(3) a REMOVE whose forward fails (a lost message), then writes (the client
    does not retry the REMOVE: the next write re-drives it)."""
    return Scope(scripts=((("write", A), ("remove", A), ("write", A), ("write", A)),), crashes=0, drops=1,
                 max_retries=0, max_steps=200)


def defect_tail(seed: int) -> Scope:
    """(4) the tail fails (and the manager notices) between two reads; it stays down
    (no quick restart: that would be defect 1). Small enough to search exhaustively."""
    return Scope(scripts=((("write", A),), (("read", A), ("read", A))), crashes=1, restarts=False, max_retries=0,
                 routing_delay=False, until_clients_done=True, max_steps=400)


def defect_gc(seed: int) -> Scope:
    """(6) GC of a file racing its writers (no other fault)."""
    return Scope(scripts=((("write", C), ("write", C)), (("write", C),)), crashes=0, gc_files=(2,),
                 async_io=True, max_steps=200)


def defect_gc_resync(seed: int) -> Scope:
    """(6) GC of a file racing a resync: the writes are done before GC starts; a node
    crashes and comes back only after the manager noticed, so it returns through
    SYNCING (no quick restart: that would be defect 1)."""
    return Scope(scripts=((("write", C), ("write", A)), (("write", C),)), crashes=1, quick_restarts=False,
                 gc_files=(2,), gc_when_idle=True, async_io=True, max_steps=200)


def finding_takeover(seed: int) -> Scope:
    """Finding F1 against the current rules: a crash leaves a pending version on the
    last SERVING target while its successor resyncs, and reads arrive at that tail."""
    return Scope(scripts=((("write", A), ("write", A)), (("read", A), ("read", A), ("read", A))), crashes=1,
                 max_retries=1, max_steps=200)


def finding_takeover_small(seed: int) -> Scope:
    """Finding F1 in a scope small enough to search exhaustively: one write, one read,
    one crash (the node comes back after the manager noticed, and resyncs)."""
    return Scope(scripts=((("write", A),), (("read", A),)), crashes=1, quick_restarts=False, max_retries=0,
                 routing_delay=False, until_clients_done=True, max_steps=400)


def finding_resync_pending(seed: int) -> Scope:
    """Finding F2: two crashes leave a version committed (and read, or acknowledged)
    only on targets that left, and pending on the one that still serves; the resync of
    a returning target carries committed versions only."""
    return Scope(scripts=((("write", A), ("read", A)), (("read", A), ("read", A), ("read", A))), crashes=2,
                 max_retries=1, max_steps=200)


PROFILES: dict[str, Callable[[int], Scope]] = {
    "exhaustive": exhaustive,
    "exhaustive-concurrent": exhaustive_concurrent,
    "exhaustive-full": exhaustive_full,
    "random": random_scope,
    "defect-restart": defect_restart,
    "defect-cancel": defect_cancel,
    "defect-remove": defect_remove,
    "defect-tail": defect_tail,
    "defect-gc": defect_gc,
    "defect-gc-resync": defect_gc_resync,
    "finding-takeover": finding_takeover,
    "finding-takeover-small": finding_takeover_small,
    "finding-resync-pending": finding_resync_pending,
}
