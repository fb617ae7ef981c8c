"""The Morse pipeline on real training with known outcomes (``tests/analysis/real_training.py``):
per group, the outcome modes (the runs' end states clustered without the graph) and their
sizes, the attractors, the adjusted Rand index between end basins and outcomes, held-out
outcome accuracy beside its chance level and the nearest-neighbour baseline in the same folds,
and the time. The first rows are the test suite's cases; the rest are harder ones the
suite does not assert (many small outcome modes, plateaus that runs of several outcomes pass).

    python bench/morse_real_training.py                      # defaults
    python bench/morse_real_training.py --settings '{"subdiv_min": 12, "subdiv_max": 16}'

Prints a Markdown table (BENCHMARKS.md records it with the command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from doodl.analysis.dynamics import MorseSettings, group_morse  # noqa: E402
from tests.analysis.real_training import train_group  # noqa: E402

# (data set, hidden units, seeds, batch or None for full-batch GD, in the test suite)
CASES = [
    *[("two_blobs", 1, n, b, True) for n in (32, 64) for b in (None, 32)],
    *[("two_blobs", 8, 32, b, True) for b in (None, 32)],
    ("xor", 2, 64, None, False), ("xor", 2, 64, 32, False), ("xor", 3, 64, None, False),
    ("three_on_a_line", 1, 64, None, False), ("three_on_a_line", 2, 64, None, False),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="{}", help="MorseSettings fields as JSON")
    args = ap.parse_args()
    settings = MorseSettings(**json.loads(args.settings))
    print(f"settings: {json.dumps(json.loads(args.settings))}\n")
    print("| data | units | seeds | optimiser | in the suite | outcome modes (runs) | attractors | ARI | "
          "held-out outcome accuracy | chance | baseline | versus baseline | undecided | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for data, width, seeds, batch, suite in CASES:
        runs, _ = train_group(width, seeds, batch, data)
        t0 = time.perf_counter()
        r = group_morse(runs, settings)
        print(f"| {data} | {width} | {seeds} | {'GD' if batch is None else f'SGD {batch}'} | {'yes' if suite else 'no'} | "
              f"{r.outcomes.n_modes} ({', '.join(map(str, r.outcomes.sizes))}) | {len(r.graph.attractors)} | "
              f"{r.ari:.2f} | {r.outcome_accuracy:.2f} | {r.outcome_chance:.2f} | {r.baseline_accuracy:.2f} | "
              f"{r.versus_baseline} | {r.n_undecided} | {time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
