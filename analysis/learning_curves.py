"""Learning curves per group: training accuracy against held-out accuracy over training.

The worker records the minibatch accuracy at every step (trajectory rows) and the
held-out accuracy (on a fixed subset of the test split) at every recorded step (snapshot
rows). Here the minibatch accuracies are
averaged over each recording interval, so both curves have one point per recorded step;
the seeds of a group are overlaid. A generalisation gap that closes late (grokking) shows
as a test curve that rises long after the training curve reached 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

MAX_PANELS = 24  # a readable page; the per-run curves are in the trajectories and MLflow


@dataclass(frozen=True)
class RunCurve:
    """One run's curves at its recorded steps."""

    steps: np.ndarray  # recorded steps
    train_acc: np.ndarray  # mean minibatch accuracy over the interval ending at each step
    test_acc: np.ndarray  # held-out accuracy at each step


def run_curves(trajectories: pa.Table, snapshots: pa.Table) -> dict[str, RunCurve]:
    """Per run: the curves from its trajectory rows (``run_id``, ``step``, ``train_acc``) and
    snapshot rows (``run_id``, ``step``, ``test_acc``). Runs without held-out values (written
    before they were recorded) are left out."""
    train_by_run = _by_run(trajectories, "train_acc")
    out = {}
    for rid, (rec_steps, test) in _by_run(snapshots, "test_acc").items():
        ok = np.isfinite(test)
        if rid not in train_by_run or not ok.any():
            continue
        steps, train = train_by_run[rid]
        at = np.searchsorted(steps, rec_steps[ok])  # recorded steps are trajectory steps
        # mean of the steps since the previous recorded step (the first point: its own step)
        edges = np.r_[at[0], at[:-1] + 1]
        csum = np.r_[0.0, np.cumsum(np.nan_to_num(train))]
        mean_train = (csum[at + 1] - csum[edges]) / (at + 1 - edges)
        out[rid] = RunCurve(rec_steps[ok], mean_train, test[ok])
    return out


def _by_run(table: pa.Table, column: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``run_id -> (steps, values)`` ordered by step."""
    table = table.sort_by([("run_id", "ascending"), ("step", "ascending")])
    run_ids = table.column("run_id").to_numpy(zero_copy_only=False)
    steps = table.column("step").to_numpy()
    values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    bounds = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1], True])
    return {str(run_ids[a]): (steps[a:b], values[a:b]) for a, b in zip(bounds[:-1], bounds[1:])}


def late_generalisation(curve: RunCurve, fit: float = 0.99, generalise: float = 0.9) -> tuple[int | None, int | None]:
    """The first recorded step where the training accuracy reaches ``fit`` and where the
    held-out accuracy reaches ``generalise`` (None when it never does). A grokking run has
    the second far after the first."""
    def first(values, level):
        hit = np.flatnonzero(values >= level)
        return int(curve.steps[hit[0]]) if len(hit) else None

    return first(curve.train_acc, fit), first(curve.test_acc, generalise)


def plot_learning_curves(groups: dict[str, list[RunCurve]], title: str = "") -> bytes:
    """One panel per group (label -> its seeds' curves): training accuracy (solid) and
    held-out accuracy (dashed), seeds overlaid. At most ``MAX_PANELS`` groups are drawn."""
    from doodl.analysis.figures import png, pyplot

    plt = pyplot()
    labels = list(groups)[:MAX_PANELS]
    cols = min(len(labels), 3) or 1
    rows = int(np.ceil(len(labels) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.2 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel()[len(labels):]:
        ax.set_visible(False)
    for ax, label in zip(axes.ravel(), labels):
        for i, c in enumerate(groups[label]):
            colour = f"C{i % 10}"
            ax.plot(c.steps, c.train_acc, color=colour, lw=1.2, label="train" if i == 0 else None)
            ax.plot(c.steps, c.test_acc, color=colour, lw=1.2, ls="--", label="held-out" if i == 0 else None)
        ax.set_title(label, fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=7, loc="lower right")
    more = f" (first {MAX_PANELS} of {len(groups)} groups)" if len(groups) > MAX_PANELS else ""
    if title or more:
        fig.suptitle(f"{title}{more}", fontsize=10)
    fig.tight_layout()
    return png(fig)
