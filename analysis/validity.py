"""The Morse graphs' validity over a whole sweep, from the stored per-group and per-run
tables (numpy only: ``doodl reduce``, ``doodl sync`` and the report read it without Ray or
torch). Per group it is computed by :mod:`doodl.analysis.dynamics`; ``docs/methods.md``
says what each figure means."""

from __future__ import annotations

from collections import Counter

import numpy as np


def sweep_validity(morse_groups, morse_runs, groups) -> dict[str, float]:
    """The Morse graphs' validity over the sweep's non-diverged runs in groups with a
    verdict (enough runs): held-out outcome accuracy, its chance level (each group's chance
    weighted by its runs), the nearest-neighbour baseline's accuracy in the same folds, and
    the adjusted Rand index between end basins and outcomes (each group's, weighted by its
    runs). NaN where no group has a verdict."""
    per_group = {r["group_id"]: r for r in morse_groups.to_pylist()
                 if r["error"] is None and not r.get("no_verdict") and r["group_id"] in groups}
    ok = [r for r in morse_runs.to_pylist() if r["status"] == "ok" and r["group_id"] in per_group
          and r.get("outcome_correct") is not None]
    names = ("outcome_accuracy", "outcome_chance", "baseline_accuracy", "ari")
    if not ok:
        return dict.fromkeys(names, float("nan"))
    n_ok = Counter(r["group_id"] for r in ok)  # one pass: sweeps have thousands of runs

    def weighted(column: str) -> float:
        return float(sum(per_group[g][column] * n for g, n in n_ok.items()) / len(ok))

    return {"outcome_accuracy": float(np.mean([r["outcome_correct"] for r in ok])),
            "outcome_chance": weighted("outcome_chance"),
            "baseline_accuracy": float(np.mean([r["baseline_correct"] for r in ok])),
            "ari": weighted("ari")}
