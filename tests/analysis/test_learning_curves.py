"""Learning curves from trajectory rows: interval means, held-out points, late generalisation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from doodl.analysis.learning_curves import late_generalisation, plot_learning_curves, run_curves


def _rows(run_id, train, test_at):
    """(trajectory rows, snapshot rows) of one run."""
    n = len(train)
    steps = sorted(test_at)
    return ({"run_id": [run_id] * n, "step": list(range(n)), "train_acc": list(train)},
            {"run_id": [run_id] * len(steps), "step": steps, "test_acc": [test_at[s] for s in steps]})


def _curves(*runs):
    traj = {k: sum((r[0][k] for r in runs), []) for k in runs[0][0]}
    snaps = {k: sum((r[1][k] for r in runs), []) for k in runs[0][1]}
    return run_curves(pa.table(traj), pa.table(snaps))


def test_curves_average_training_accuracy_over_each_recording_interval():
    train = np.r_[np.zeros(5), np.ones(5), np.full(5, 0.5)]  # steps 0..14
    curves = _curves(_rows("a", train, {0: 0.1, 4: 0.2, 9: 0.3, 14: 0.9}), _rows("b", np.ones(5), {0: 0.0, 4: 1.0}))
    a = curves["a"]
    np.testing.assert_array_equal(a.steps, [0, 4, 9, 14])
    # step 0 alone; steps 1-4; 5-9; 10-14
    np.testing.assert_allclose(a.train_acc, [0.0, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(a.test_acc, [0.1, 0.2, 0.3, 0.9], rtol=1e-6)
    np.testing.assert_allclose(curves["b"].train_acc, [1.0, 1.0])


def test_late_generalisation_finds_the_fit_and_the_generalisation_steps():
    train = np.r_[np.linspace(0, 1, 11), np.ones(90)]  # fits at step 10
    test = {s: (0.05 if s < 80 else 0.95) for s in range(0, 101, 10)}
    curve = _curves(_rows("g", train, test))["g"]
    assert late_generalisation(curve) == (20, 80)  # the interval mean reaches 0.99 in (10, 20]
    never = _curves(_rows("n", train, {s: 0.1 for s in range(0, 101, 10)}))["n"]
    assert late_generalisation(never) == (20, None)


def test_plot_is_a_png_with_one_panel_per_group():
    curve = _curves(_rows("a", np.ones(11), {0: 0.0, 10: 1.0}))["a"]
    png = plot_learning_curves({"g1": [curve], "g2": [curve, curve]}, title="t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
