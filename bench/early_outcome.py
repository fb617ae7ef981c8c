"""Early outcome prediction (``doodl.analysis.early_outcome``) on real training with known
outcomes (``tests/analysis/real_training.py``): per group and fraction of training ``f``,
the held-out (leave one run out) accuracy of the outcome predicted from the early state,
beside the outcomes' chance level and the curve-only baseline. The outcome is the known
answer: whether the run's final train accuracy ended in its top cluster (solved) or below
(stuck), defined without the predictor.

    python bench/early_outcome.py

Prints a Markdown table (BENCHMARKS.md records it with the command).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from doodl.analysis.early_outcome import FRACTIONS, early_runs, predict_outcomes  # noqa: E402

# (data set, hidden units, seeds, batch or None for full-batch GD)
CASES = [("two_blobs", 1, 48, 32), ("two_blobs", 1, 48, None), ("xor", 2, 64, None), ("xor", 2, 64, 32),
         ("three_on_a_line", 1, 64, None), ("three_on_a_line", 2, 64, None)]


def outcome_labels(final_acc: np.ndarray) -> np.ndarray:
    """Each run's outcome: its final train accuracy rounded to the task's resolution (a
    stuck minimum misclassifies a whole blob: accuracy steps of 1/2, 1/3 or 1/4), the largest
    mode 0."""
    levels = np.round(final_acc * 12) / 12
    values, labels = np.unique(levels, return_inverse=True)
    order = np.argsort(-np.bincount(labels), kind="stable")
    return np.argsort(order)[labels]


def group(data: str, width: int, seeds: int, batch: int | None):
    from tests.analysis.real_training import train_result

    cfgs, result = train_result(width, seeds, batch, data)
    labels = outcome_labels(result.final_metrics["final_train_acc"].astype(np.float64))
    return early_runs(result, ["g"] * seeds, labels)


def main() -> None:
    print("| data | units | seeds | optimiser | outcomes (runs) | f | held-out accuracy | chance | curve-only |")
    print("|---|---|---|---|---|---|---|---|---|")
    for data, width, seeds, batch in CASES:
        runs = group(data, width, seeds, batch)
        sizes = np.bincount([r.outcome for r in runs]).tolist()
        for f in FRACTIONS:
            v = predict_outcomes(runs, f)
            print(f"| {data} | {width} | {seeds} | {'GD' if batch is None else f'SGD {batch}'} | {len(sizes)} "
                  f"({', '.join(map(str, sizes))}) | {f} | {v.accuracy:.2f} | {v.chance:.2f} | {v.baseline:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
