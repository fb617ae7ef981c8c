"""Early outcome prediction against known answers: gradient descent in a double well, where
the basin is fixed by the start and the loss curves of mirrored runs are identical; labels
unrelated to the early state (the figure must fall to chance); learning curves whose end is
a known function of their start; and real training with a known spurious minimum."""

from __future__ import annotations

import numpy as np
import pytest

from doodl.analysis.early_outcome import (EarlyRun, early_runs, extrapolate_accuracy, predict_final_accuracy,
                                          predict_outcomes)


def _double_well_runs(n_pairs: int = 16, steps: int = 200, dim: int = 4, lr: float = 0.02) -> list[EarlyRun]:
    """GD on V(x) = (x_0^2 - 1)^2 + sum_i x_i^2: x_0 never changes sign, so the well a run
    ends in is the sign of its start; each start is paired with its mirror (x_0 -> -x_0),
    whose loss curve is the same to the last bit."""
    rng = np.random.default_rng(0)
    runs = []
    for p in range(n_pairs):
        x0 = rng.normal(0, 0.5, dim)
        x0[0] = abs(x0[0]) + 0.05
        for sign in (1.0, -1.0):
            x = x0.copy()
            x[0] *= sign
            xs, loss, grad = [x.copy()], [], []
            for _ in range(steps + 1):
                g = np.r_[4 * x[0] * (x[0] ** 2 - 1), 2 * x[1:]]
                loss.append((x[0] ** 2 - 1) ** 2 + np.sum(x[1:] ** 2))
                grad.append(np.linalg.norm(g))
                x = x - lr * g
                xs.append(x.copy())
            snaps = np.arange(0, steps + 1, 10)
            theta = np.array(xs)[snaps]
            runs.append(EarlyRun(f"r{p}{'+' if sign > 0 else '-'}", "g", snaps, theta, np.linalg.norm(theta, axis=1),
                                 np.linalg.norm(theta - theta[0], axis=1), np.array(loss), np.zeros(steps + 1),
                                 np.array(grad), np.zeros(len(snaps)), 0.0, int(xs[-1][0] < 0)))
    return runs


def test_the_early_state_knows_the_well_and_the_loss_curve_cannot():
    verdict = predict_outcomes(_double_well_runs(), 0.1)
    assert verdict.chance == 0.5 and verdict.n_outcomes == 2
    assert verdict.accuracy == 1.0
    # each run's loss curve is its mirror's, which ended in the other well: worse than guessing
    assert verdict.baseline <= 0.25


def test_outcomes_unrelated_to_the_early_state_score_chance():
    runs = _double_well_runs(n_pairs=60)
    rng = np.random.default_rng(1)
    shuffled = [EarlyRun(**{**r.__dict__, "outcome": int(o)}) for r, o in zip(runs, rng.permutation(
        [r.outcome for r in runs]))]
    verdict = predict_outcomes(shuffled, 0.1)
    assert verdict.accuracy < verdict.chance + 0.15  # not the margin a real signal clears


def _curve_runs(groups: int = 8, seeds: int = 4, steps: int = 400, tau: float = 60.0) -> list[EarlyRun]:
    """Accuracy curves acc(t) = A (1 - exp(-t / tau)) with a ceiling A per group: the final
    accuracy is the accuracy at f times a constant, a line an early model can learn across
    groups; the error is not a power law, so extrapolating it as one is biased."""
    rng = np.random.default_rng(2)
    runs = []
    t = np.arange(steps + 1, dtype=np.float64)
    snaps = np.arange(0, steps + 1, 10)
    for g in range(groups):
        ceiling = 0.5 + 0.45 * g / (groups - 1)
        for s in range(seeds):
            a = ceiling + rng.normal(0, 0.01)
            acc = a * (1 - np.exp(-t / tau))
            loss = -np.log(np.clip(acc, 0.01, None) * 0.5 + 0.5)
            theta = np.outer(acc[snaps], np.ones(3))
            runs.append(EarlyRun(f"g{g}s{s}", f"g{g}", snaps, theta, np.linalg.norm(theta, axis=1) + 1,
                                 np.linalg.norm(theta - theta[0], axis=1), loss, acc, np.gradient(loss),
                                 acc[snaps], float(acc[-1])))
    return runs


def test_final_accuracy_is_predicted_across_left_out_groups():
    runs = _curve_runs()
    verdict = predict_final_accuracy(runs, 0.2)
    assert verdict.n_groups == 8
    assert verdict.mae < 0.2 * verdict.chance_mae  # the groups' ceilings are read from their start
    assert verdict.r2 > 0.9
    assert verdict.mae < verdict.baseline_mae


def test_the_curve_baseline_extrapolates_a_power_law_exactly():
    steps = np.arange(0, 1001, 10)
    err = 0.5 * np.maximum(steps, 1) ** -0.5
    run = EarlyRun("r", "g", steps, np.zeros((len(steps), 2)), np.ones(len(steps)), np.zeros(len(steps)),
                   np.ones(1001), np.zeros(1001), np.zeros(1001), 1 - err, 0.0)
    assert extrapolate_accuracy(run, 0.1) == pytest.approx(1 - 0.5 * 1000 ** -0.5, abs=1e-9)


def test_real_training_outcomes_are_told_from_the_first_tenth():
    """One hidden unit on two blobs (tests/analysis/real_training.py): a unit dead at
    initialisation stays dead (train accuracy 0.5), any other solves the task. The known
    answer, each run's final train accuracy, is defined without the predictor."""
    from tests.analysis.real_training import train_result

    cfgs, result = train_result(1, 48, 32, "two_blobs")
    solved = result.final_metrics["final_train_acc"] > 0.75
    assert 0 < (~solved).sum() < len(cfgs) / 2  # both outcomes occur, solved the larger
    verdict = predict_outcomes(early_runs(result, ["g"] * len(cfgs), (~solved).astype(int)), 0.1)
    assert verdict.chance == pytest.approx(solved.mean())
    assert verdict.accuracy >= verdict.chance + 0.15 or verdict.accuracy == 1.0
