"""The Morse pipeline on the known-answer suite: per case, number of runs and settings, the
attractors found against the wells the runs really ended in, whether every run ends in the
attractor of its own well, held-out basin accuracy beside its chance level, and the time.

    python bench/morse_known_answers.py                       # defaults, 8/16/32/64 runs
    python bench/morse_known_answers.py --settings '{"uncertainty": 0}' --runs 8,16

Prints a Markdown table (BENCHMARKS.md records it with the command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.dynamics import MorseSettings, group_morse  # noqa: E402
from tests.analysis.known_dynamics import descend  # noqa: E402
from tests.analysis.test_dynamics import CASES as SUITE  # noqa: E402

# the suite, and issue 10's failing case: every coordinate of the starts uniform in [-1.5, 1.5]
CASES = {**SUITE, "double_well_uniform_starts": dict(landscape="double_well", stratified=False)}


def verdict(result, wells: np.ndarray) -> bool:
    """Every well one attractor of its own, every run ending in its well's attractor."""
    ends = np.array([v.end_attractor for v in result.verdicts])
    k = len(set(wells.tolist()))
    per_well = [set(ends[wells == w].tolist()) for w in sorted(set(wells.tolist()))]
    return (len(result.graph.attractors) == k and (ends >= 0).all() and all(len(p) == 1 for p in per_well)
            and len({p.pop() for p in per_well}) == k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="{}", help="MorseSettings fields as JSON")
    ap.add_argument("--runs", default="8,16,32,64")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    settings = MorseSettings(**json.loads(args.settings))
    print(f"settings: {json.dumps(json.loads(args.settings))}\n")
    print("| case | runs | wells | attractors | Morse sets (unresolved) | runs in own well's attractor | "
          "held-out basin accuracy (start) | chance | Morse graph s | total s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    morse_s = {}
    for case in args.cases.split(","):
        for n in (int(x) for x in args.runs.split(",")):
            kw = dict(CASES[case])
            runs, wells = descend(kw.pop("landscape"), n, seed=n, **kw)
            t0 = time.perf_counter()
            res = group_morse(runs, settings)
            g = res.graph
            print(f"| {case} | {n} | {len(set(wells.tolist()))} | {len(g.attractors)} | {len(g.nodes)} "
                  f"({len(g.unresolved)}) | {'yes' if verdict(res, wells) else 'no'} | {res.basin_accuracy:.2f} "
                  f"({res.basin_accuracy_start:.2f}) | {res.chance:.2f} | {res.timings['morse_s']:.2f} | "
                  f"{time.perf_counter() - t0:.1f} |", flush=True)
            morse_s.setdefault(n, []).append(res.timings["morse_s"])
    for n, secs in morse_s.items():
        print(f"\nmedian Morse graph time, {n} runs: {np.median(secs):.2f} s (d = {settings.dims})")


if __name__ == "__main__":
    main()
