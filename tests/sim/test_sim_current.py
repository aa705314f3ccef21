"""The replication rules of storage/replication.py, model-checked (issue 15).

Every schedule of the exhaustive scopes and EMBERFS_SIM_SCHEDULES seeded random
schedules (default 3000, from seed EMBERFS_SIM_SEED, default 0) run on CurrentRules
with the invariants I1-I5 (tests/sim/emsim/checks.py) checked after every step.
A failure prints the violated invariant, the schedule and a one-line replay command.

    pytest tests/sim -s                                    # with the figures
    EMBERFS_SIM_SCHEDULES=20000 pytest tests/sim/test_sim_current.py -s
    EMBERFS_SIM_EXHAUSTIVE=full pytest tests/sim/test_sim_current.py -s -k exhaustive
"""

from __future__ import annotations

import os
import time

import emsim  # registered by tests/sim/conftest.py
import pytest
from emsim import PROFILES, explore_all, run_random

SCHEDULES = int(os.environ.get("EMBERFS_SIM_SCHEDULES", "3000"))
FIRST_SEED = int(os.environ.get("EMBERFS_SIM_SEED", "0"))
EXHAUSTIVE = ["exhaustive", "exhaustive-concurrent"]
if os.environ.get("EMBERFS_SIM_EXHAUSTIVE") == "full":
    EXHAUSTIVE.append("exhaustive-full")


def _random_schedules(rules: str, profile: str, seeds: range) -> list[emsim.Outcome]:
    started = time.monotonic()
    failures, steps = [], 0
    for seed in seeds:
        out = run_random(rules, profile, PROFILES[profile](seed), seed)
        steps += out.steps
        if out.failed:
            failures.append(out)
    seconds = time.monotonic() - started
    print(f"\n[sim] {rules}/{profile}: {len(seeds)} random schedules (seeds {seeds.start}..{seeds.stop - 1}), "
          f"{steps} steps, {seconds:.1f} s, {len(failures)} failed")
    return failures


def _explain(failures: list[emsim.Outcome]) -> str:
    seeds = ", ".join(str(f.seed) for f in failures[:20])
    return f"{len(failures)} schedules failed (seeds {seeds}); the first:\n{failures[0].report()}"


@pytest.mark.parametrize("profile", EXHAUSTIVE)
def test_every_schedule_of_the_small_scope_keeps_the_invariants(profile: str) -> None:
    stats = explore_all("current", profile, PROFILES[profile](0), time_limit=600.0)
    print(f"\n[sim] current/{profile}: exhaustive, {stats.states} distinct states, {stats.schedules} schedules "
          f"healed and checked, {stats.steps} steps, depth {stats.max_depth}, {stats.seconds:.1f} s")
    assert not stats.failures, stats.failures[0].report()
    assert stats.schedules > 1


def test_random_schedules_keep_the_invariants() -> None:
    failures = _random_schedules("current", "random", range(FIRST_SEED, FIRST_SEED + SCHEDULES))
    assert not failures, _explain(failures)


def test_the_scopes_of_the_findings_keep_the_invariants() -> None:
    """Findings F1 and F2 of this simulator (fixed in b4b33c6; test_sim_legacy.py shows
    the simulator finds them on the operator before it): a take-over must reach a
    SYNCING successor, and a resync source must take over its pending versions before
    it lists its chunks. Their smallest scope is searched up to 5,000 states (all of
    it, ~50,000 states, with `replay.py`), and their seeds are run."""
    stats = explore_all("current", "finding-takeover-small", PROFILES["finding-takeover-small"](0),
                        max_states=5_000)
    print(f"\n[sim] current/finding-takeover-small: {stats.states} states, {stats.seconds:.1f} s")
    assert not stats.failures, stats.failures[0].report()
    failures = _random_schedules("current", "finding-takeover", range(2600, 2700))
    failures += _random_schedules("current", "finding-resync-pending", range(4790, 4800))
    assert not failures, _explain(failures)
