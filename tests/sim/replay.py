"""Replay one simulated schedule, printing every event and the state after it.

    python tests/sim/replay.py --rules legacy --profile defect-cancel --seed 12
    python tests/sim/replay.py --rules current --profile exhaustive --trace "[('client', 1, 0), ...]"
    python tests/sim/replay.py --rules current --profile random --seeds 0:500   # a quick search
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from emsim import PROFILES, replay, run_random
from emsim.rules import RULES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", choices=sorted(RULES), default="current")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace", help="a recorded list of choices (an exhaustive-search failure)")
    parser.add_argument("--seeds", help="A:B: run seeds A..B-1 quietly, report failures")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    scope = PROFILES[args.profile](args.seed)
    if args.seeds:
        lo, hi = (int(x) for x in args.seeds.split(":"))
        failed = 0
        for seed in range(lo, hi):
            out = run_random(args.rules, args.profile, PROFILES[args.profile](seed), seed)
            if out.failed:
                failed += 1
                print(f"seed {seed}: {out.violation}  ->  {out.replay_command()}")
        print(f"{hi - lo} schedules, {failed} failed")
        return 1 if failed else 0
    trace = ast.literal_eval(args.trace) if args.trace else run_random(args.rules, args.profile, scope, args.seed).trace
    out = replay(args.rules, args.profile, scope, trace, verbose=not args.quiet)
    if args.trace is None:
        out.seed = args.seed
    print(out.report() if out.failed else f"no invariant broke ({out.steps} steps)")
    return 1 if out.failed else 0


if __name__ == "__main__":
    sys.exit(main())
