"""The Morse pipeline on the known-answer suite: per case, number of runs and settings, the
attractors found against the wells the runs really ended in, whether every run ends in the
attractor of its own well, the outcome modes (the runs' ends clustered without the graph)
against the wells, held-out outcome accuracy beside its chance level and the nearest-neighbour
baseline, and the time.

    python bench/morse_known_answers.py                       # defaults, 8/16/32/64 runs, the tests' seeds
    python bench/morse_known_answers.py --seeds 5             # 5 more seeds per cell: how often it holds
    python bench/morse_known_answers.py --settings '{"tau": 2}' --runs 16

Prints a Markdown table (BENCHMARKS.md records it with the command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from doodl.analysis.dynamics import MorseSettings, group_morse  # noqa: E402
from tests.analysis.known_dynamics import descend  # noqa: E402
from tests.analysis.test_dynamics import CASES as SUITE  # noqa: E402

# the suite, and issue 10's failing case: every coordinate of the starts uniform in [-1.5, 1.5]
# (separatrix included: there "undecided" is the right answer at the grid's resolution)
CASES = {**SUITE, "double_well_uniform_starts": dict(landscape="double_well", stratified=False)}
EXTRA_SEEDS_FROM = 100  # --seeds K uses seeds 100 .. 100 + K - 1 (the tests use seed = runs)


def verdict(result, wells: np.ndarray) -> bool:
    """Every well one attractor of its own, every run ending in its well's attractor."""
    ends = np.array([v.end_attractor for v in result.verdicts])
    k = len(set(wells.tolist()))
    per_well = [set(ends[wells == w].tolist()) for w in sorted(set(wells.tolist()))]
    return (len(result.graph.attractors) == k and (ends >= 0).all() and all(len(p) == 1 for p in per_well)
            and len({p.pop() for p in per_well}) == k)


def wrong(result) -> int:
    """Held-out runs whose early state was placed in a basin standing for another outcome
    than theirs (undecided ones, on a separatrix, are not wrong: they are not placed)."""
    return sum(1 for v in result.verdicts if v.predicted_outcome is not None and v.predicted_outcome >= 0
               and v.predicted_outcome != v.outcome)


def one(job: tuple[str, int, int, str]) -> dict:
    case, n, seed, settings = job
    kw = dict(CASES[case])
    runs, wells = descend(kw.pop("landscape"), n, seed=seed, **kw)
    t0 = time.perf_counter()
    res = group_morse(runs, MorseSettings(**json.loads(settings)))
    g = res.graph
    return {"case": case, "n": n, "seed": seed, "wells": len(set(wells.tolist())), "attractors": len(g.attractors),
            "nodes": len(g.nodes), "unresolved": len(g.unresolved), "ok": verdict(res, wells),
            "modes_ok": adjusted_rand_score(wells, res.outcomes.labels) == 1.0, "ari": res.ari,
            "acc": res.outcome_accuracy, "chance": res.outcome_chance, "base": res.baseline_accuracy,
            "undecided": res.n_undecided, "wrong": wrong(res), "morse_s": res.timings["morse_s"],
            "total_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="{}", help="MorseSettings fields as JSON")
    ap.add_argument("--runs", default="8,16,32,64")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--seeds", type=int, default=0, help="0: the tests' seeds; K: K other seeds per cell, summarised")
    ap.add_argument("--jobs", type=int, default=2, help="processes (one thread each)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.runs.split(",")]
    seeds = (lambda n: [n]) if args.seeds == 0 else (lambda n: list(range(EXTRA_SEEDS_FROM, EXTRA_SEEDS_FROM + args.seeds)))
    jobs = [(c, n, s, args.settings) for c in args.cases.split(",") for n in sizes for s in seeds(n)]
    with Pool(args.jobs) as pool:
        out = pool.map(one, jobs, chunksize=1)
    print(f"settings: {json.dumps(json.loads(args.settings))}\n")
    if args.seeds == 0:
        print("| case | runs | wells | attractors | Morse sets (unresolved) | runs in own well's attractor | "
              "outcome modes = wells | ARI | held-out outcome accuracy | chance | baseline | undecided / wrong | "
              "Morse graph s | total s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in out:
            print(f"| {r['case']} | {r['n']} | {r['wells']} | {r['attractors']} | {r['nodes']} ({r['unresolved']}) | "
                  f"{'yes' if r['ok'] else 'no'} | {'yes' if r['modes_ok'] else 'no'} | {r['ari']:.2f} | "
                  f"{r['acc']:.2f} | {r['chance']:.2f} | {r['base']:.2f} | "
                  f"{r['undecided']} / {r['wrong']} | {r['morse_s']:.2f} | {r['total_s']:.1f} |")
    else:
        print(f"| case | runs | structure right | accuracy 1.0 | lowest accuracy | undecided / wrong runs | "
              f"max Morse sets |  ({args.seeds} seeds per cell)")
        print("|---|---|---|---|---|---|---|")
        for c in args.cases.split(","):
            for n in sizes:
                cell = [r for r in out if r["case"] == c and r["n"] == n]
                print(f"| {c} | {n} | {sum(r['ok'] for r in cell)}/{len(cell)} | "
                      f"{sum(r['acc'] == 1.0 for r in cell)}/{len(cell)} | {min(r['acc'] for r in cell):.2f} | "
                      f"{sum(r['undecided'] for r in cell)} / {sum(r['wrong'] for r in cell)} | "
                      f"{max(r['nodes'] for r in cell)} |")
    for n in sizes:
        secs = [r["morse_s"] for r in out if r["n"] == n]
        print(f"\nmedian Morse graph time, {n} runs: {np.median(secs):.2f} s (d = {MorseSettings(**json.loads(args.settings)).dims})")


if __name__ == "__main__":
    main()
