"""Who picks the choices: a seeded random walk (`run_random`), an exhaustive
depth-first search with state hashing (`explore_all`), and `replay` of a recorded
trace. All end a schedule with `heal` (I4). A failure carries its trace and the
command that replays it.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .model import Choice, Client, Scope, Violation
from .rules import rules_named
from .world import World

HEAL_STEPS = 800
HEAL_RETRIES = 6

# Relative odds of each kind of choice in a random walk: faults are rarer than progress.
WEIGHTS = {"deliver": 12, "io": 10, "client": 5, "heartbeat": 4, "timeout": 2, "restart": 2, "resync": 3,
           "gc": 1, "gc_retry": 3, "drop": 1, "cancel": 1, "crash": 1}


@dataclass
class Outcome:
    rules: str
    profile: str
    seed: int | None
    trace: list[Choice]
    """The schedule's choices (healing follows them when the scope heals)."""
    violation: Violation | None = None
    steps: int = 0
    heal_trace: list[Choice] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.violation is not None

    def replay_command(self) -> str:
        if self.seed is not None:
            return f"python tests/sim/replay.py --rules {self.rules} --profile {self.profile} --seed {self.seed}"
        return (f"python tests/sim/replay.py --rules {self.rules} --profile {self.profile} "
                f'--trace "{self.trace!r}"')

    def report(self) -> str:
        header = f"rules={self.rules} profile={self.profile} seed={self.seed} ({len(self.trace)} events):"
        lines = [f"{self.violation}", header]
        lines += [f"  {i:3d} {c!r}" for i, c in enumerate(self.trace)]
        if self.heal_trace:
            more = " ..." if len(self.heal_trace) > 12 else ""
            lines.append(f"  then healing ({len(self.heal_trace)} events): "
                         + " ".join(repr(c) for c in self.heal_trace[-12:]) + more)
        lines += [f"  note at step {step}: {what}" for step, what in self.notes]
        lines.append(f"replay: {self.replay_command()}")
        return "\n".join(lines)


def converge(world: World, trace: list[Choice], limit: int, until: Any = None) -> None:
    """With faults off, take the first enabled choice (oldest message first) until
    nothing is left, `until()` holds, or `limit` steps."""
    for _ in range(limit):
        if until is not None and until():
            return
        choices = world.enabled()
        if not choices:
            return
        trace.append(choices[0])
        world.step(choices[0])


def heal(world: World, trace: list[Choice]) -> None:
    """I4: stop faults, restart every crashed node once the manager has noticed it,
    converge, then write every live chunk."""
    world.healing = True
    for node in list(world.nodes.values()):
        if not node.alive:  # a polite restart: after the manager noticed
            for choice in (("timeout", node.nid), ("restart", node.nid)):
                if choice in world.enabled():
                    trace.append(choice)
                    world.step(choice)
    converge(world, trace, HEAL_STEPS)
    live = tuple(c for c in world.scope.chunks if c[0] not in world.deleted)
    healer = Client("heal", tuple(("write", c) for c in live), retries=HEAL_RETRIES, healer=True)
    world.clients["heal"] = healer
    converge(world, trace, HEAL_STEPS, until=lambda: healer.done)
    for chunk in live:
        if not any(c == chunk and r[0] == "ok" for c, r in healer.outcomes):
            raise Violation("I4", f"chunk {chunk} cannot be written after healing: "
                                  f"{[r for c, r in healer.outcomes if c == chunk]}")
    converge(world, trace, HEAL_STEPS)
    world.checker.check_healed()


def pick(rng: random.Random, choices: list[Choice]) -> Choice:
    weights = [WEIGHTS[c[0]] for c in choices]
    return rng.choices(choices, weights)[0]


def run_random(rules: str, profile: str, scope: Scope, seed: int) -> Outcome:
    rng = random.Random(seed)
    world = World(rules_named(rules), scope)
    out = Outcome(rules, profile, seed, [])
    try:
        while world.steps < scope.max_steps:
            choices = world.enabled()
            if not choices:
                break
            choice = pick(rng, choices)
            out.trace.append(choice)
            world.step(choice)
        if scope.heal:
            heal(world, out.heal_trace)
    except Violation as v:
        out.violation = v
    out.steps = world.steps
    out.notes = world.notes
    return out


def replay(rules: str, profile: str, scope: Scope, trace: list[Choice], *, verbose: bool = False,
           heal_after: bool = True) -> Outcome:
    """Re-run a recorded trace (each choice must be enabled when its turn comes)."""
    world = World(rules_named(rules), scope)
    out = Outcome(rules, profile, None, [])
    try:
        for choice in trace:
            enabled = world.enabled()
            if choice not in enabled:
                raise RuntimeError(f"step {len(out.trace)}: {choice!r} is not enabled; enabled: {enabled!r}")
            out.trace.append(choice)
            world.step(choice)
            if verbose:
                print(f"{len(out.trace) - 1:3d} {choice!r}\n     chain v{world.chain.chain_version} "
                      f"{[(t.target_id, t.state.name) for t in world.chain.targets]}; disks "
                      f"{ {n.nid: dict(n.disk) for n in world.nodes.values()} }", file=sys.stderr)
        if heal_after and scope.heal:
            heal(world, out.heal_trace)
    except Violation as v:
        out.violation = v
    out.steps = world.steps
    out.notes = world.notes
    return out


@dataclass
class SearchStats:
    states: int = 0
    schedules: int = 0
    steps: int = 0
    seconds: float = 0.0
    max_depth: int = 0
    complete: bool = True
    """False when `max_states` cut the search short."""
    failures: list[Outcome] = field(default_factory=list)


def explore_all(rules: str, profile: str, scope: Scope, *, max_depth: int = 120,
                time_limit: float = 300.0, max_states: int | None = None) -> SearchStats:
    """Every interleaving of `scope` (depth-first over the scheduler's choices, a
    state reached before is not explored again). Stops at the first failure, or
    (incomplete) after `max_states` distinct states."""
    stats = SearchStats()
    seen: set[int] = set()
    started = time.monotonic()

    def fresh(prefix: list[Choice]) -> World:
        world = World(rules_named(rules), scope)
        for choice in prefix:
            world.step(choice)
        stats.steps += len(prefix)
        return world

    def dfs(prefix: list[Choice], world: World) -> bool:
        fp = world.fingerprint()
        if fp in seen or not stats.complete:
            return False
        if max_states is not None and len(seen) >= max_states:
            stats.complete = False
            return False
        seen.add(fp)
        stats.states += 1
        stats.max_depth = max(stats.max_depth, len(prefix))
        if time.monotonic() - started > time_limit:
            raise TimeoutError(f"exhaustive search passed {time_limit} s after {stats.states} states")
        done = scope.until_clients_done and all(c.done for c in world.clients.values())
        choices = world.enabled() if len(prefix) < max_depth and not done else []
        if not choices:
            stats.schedules += 1
            healing: list[Choice] = []
            try:
                if scope.heal:
                    heal(world, healing)
            except Violation as v:
                stats.failures.append(Outcome(rules, profile, None, list(prefix), v, heal_trace=healing,
                                              notes=world.notes))
                return True
            stats.steps += len(healing)
            return False
        for i, choice in enumerate(choices):
            child = world if i == len(choices) - 1 else fresh(prefix)
            try:
                child.step(choice)
            except Violation as v:
                stats.failures.append(Outcome(rules, profile, None, prefix + [choice], v, notes=child.notes))
                return True
            stats.steps += 1
            if dfs(prefix + [choice], child):
                return True
        return False

    dfs([], World(rules_named(rules), scope))
    stats.seconds = time.monotonic() - started
    return stats
