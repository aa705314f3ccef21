"""EmberFS's deterministic simulator of the per-chunk CRAQ rules (issue 15).

One chain of 3 targets, 2-3 clients, a manager running common/chainstate.next_chain,
a network that loses and reorders, disks that keep committed state across crashes,
cancellations, restarts and GC, all chosen by a scheduler (a seeded random walk or
an exhaustive search), with the invariants of checks.py checked after every step.
The same node model (handlers.py) runs `CurrentRules` (storage/replication.py) or
`LegacyRules` (the pre-fix behaviour); see rules.py.

    scenarios.PROFILES   named scopes, e.g. "exhaustive", "random", "defect-cancel"
    explore.run_random   one seeded schedule      explore.explore_all  every schedule
    explore.replay       a recorded trace         tests/sim/replay.py  the command line
"""

from .explore import Outcome, SearchStats, explore_all, replay, run_random
from .model import Scope, Violation
from .scenarios import PROFILES

__all__ = ["PROFILES", "Outcome", "Scope", "SearchStats", "Violation", "explore_all", "replay", "run_random"]
