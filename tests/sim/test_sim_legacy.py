"""The simulator finds each pre-fix defect of issue 15 on LegacyRules (the behaviour
before the fix, re-implemented in tests/sim/emsim/rules.py), and the same scenario
breaks nothing on CurrentRules. These tests pass when the defect IS found. It also
finds its own two findings, F1 and F2, on the operator as it was before commit
b4b33c6 (rules "current-before-b4b33c6"), which fixed both.

Each scenario (a profile in emsim/scenarios.py) allows only the fault its defect
needs; a random scenario reports its first failing seed, an exhaustive one the first
failing schedule of its depth-first search; both print the replay command.
"""

from __future__ import annotations

import emsim  # registered by tests/sim/conftest.py
import pytest
from emsim import PROFILES, explore_all, run_random

RANDOM_SEEDS = 3000

# (defect, rules, profile, search: "exhaustive" or the first seed, the invariant that breaks)
DEFECTS = [
    ("1: a restart inside the heartbeat timeout keeps the target SERVING -> divergence",
     "legacy", "defect-restart", 0, "I2"),
    ("1: found by the exhaustive scope too", "legacy", "exhaustive", "exhaustive", "I2"),
    ("2: a cancelled handler releases the lock -> two updates at once -> divergence",
     "legacy", "defect-cancel", 0, "I2"),
    ("3: a failed REMOVE forward, then a write -> the chunk is unwritable for ever",
     "legacy", "defect-remove", 0, "I4"),
    ("4: the tail fails -> the new tail serves an older committed version",
     "legacy", "defect-tail", "exhaustive", "I3"),
    ("6: GC racing a writer -> an orphan chunk", "legacy", "defect-gc", 0, "I5"),
    # Seed 0 already breaks I5 (a sync REMOVE re-creates a pending record after GC);
    # seed 57 is the first whose orphan holds committed bytes.
    ("6: GC racing a resync -> an orphan chunk", "legacy", "defect-gc-resync", 57, "I5"),
    ("F1: a take-over skips the SYNCING successor -> it is promoted without the version",
     "current-before-b4b33c6", "finding-takeover-small", "exhaustive", "I4"),
    ("F2: a resync leaves out what the source holds pending -> reads go back",
     "current-before-b4b33c6", "finding-resync-pending", 4790, "I3"),
]


def _first_failure(rules: str, profile: str, search: str | int) -> emsim.Outcome | None:
    if search == "exhaustive":
        stats = explore_all(rules, profile, PROFILES[profile](0), time_limit=300.0)
        print(f"\n[sim] {rules}/{profile}: exhaustive, {stats.states} states, {stats.schedules} schedules, "
              f"{stats.seconds:.1f} s")
        return stats.failures[0] if stats.failures else None
    assert isinstance(search, int)
    for seed in range(search, search + RANDOM_SEEDS):
        out = run_random(rules, profile, PROFILES[profile](seed), seed)
        if out.failed:
            print(f"\n[sim] {rules}/{profile}: first failing seed {seed}")
            return out
    print(f"\n[sim] {rules}/{profile}: no failure in seeds {search}..{search + RANDOM_SEEDS - 1}")
    return None


@pytest.mark.parametrize(("defect", "rules", "profile", "search", "invariant"), DEFECTS, ids=[d[2] for d in DEFECTS])
def test_the_defect_is_found(defect: str, rules: str, profile: str, search: str | int, invariant: str) -> None:
    out = _first_failure(rules, profile, search)
    assert out is not None, f"defect {defect}: not found by {profile}"
    print(out.report())
    assert out.violation is not None and out.violation.invariant == invariant, (
        f"defect {defect}: expected {invariant} to break first, got {out.violation}\n{out.report()}")


@pytest.mark.parametrize("profile", sorted({d[2] for d in DEFECTS if d[1] == "legacy" and d[3] != "exhaustive"}))
def test_the_same_scenario_keeps_the_invariants_on_current_rules(profile: str) -> None:
    failures = [out for seed in range(RANDOM_SEEDS // 3)
                if (out := run_random("current", profile, PROFILES[profile](seed), seed)).failed]
    assert not failures, failures[0].report()


def test_defect_tail_scope_keeps_the_invariants_on_current_rules() -> None:
    assert _first_failure("current", "defect-tail", "exhaustive") is None
