"""`doodl reduce --only early` on a stored sweep with known outcomes: one hidden unit on two
blobs (a unit dead at initialisation stays dead; tests/analysis/real_training.py) beside
eight units (every seed solves it). The outcome modes come from the end states, the
predictions from the first fractions of training, graded with each run (or group) left out."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="module")
def reduced(early_blobs):
    tmp = early_blobs
    root = tmp / "store" / "blobs" / "reduction"
    return tmp, pq.read_table(root / "early.parquet").to_pylist(), pq.read_table(
        root / "early_predictions.parquet").to_pylist(), root


def test_dead_units_are_told_from_the_first_tenth(reduced):
    tmp, groups, _, _ = reduced
    by_outcomes = sorted(groups, key=lambda g: g["n_outcomes"])
    solved_only, split = by_outcomes[0], by_outcomes[-1]
    assert solved_only["n_outcomes"] == 1 and split["n_outcomes"] == 2  # eight units: one outcome; one unit: two
    k = split["fractions"].index(0.1)
    assert split["outcome_chance"] < 1.0
    assert split["outcome_accuracy"][k] >= min(1.0, split["outcome_chance"] + 0.15)
    assert all(g["error"] is None for g in groups)


def test_final_accuracy_is_predicted_with_the_group_left_out(reduced):
    _, groups, predictions, root = reduced
    assert len(predictions) == 64 * 3  # every run at every fraction
    for g in groups:  # the sweep step's columns, one per fraction
        assert len(g["final_acc_mae"]) == len(g["final_acc_chance_mae"]) == len(g["fractions"]) == 3
    assert all(0 <= p["predicted_final_acc"] <= 1 for p in predictions if p["predicted_final_acc"] is not None)
    assert (root / "plots" / "early_outcome.png").stat().st_size > 10_000


def test_the_results_reach_mlflow(reduced):
    from mlflow.tracking import MlflowClient

    tmp, groups, _, _ = reduced
    client = MlflowClient(f"sqlite:///{tmp / 'm.db'}")
    exp = client.get_experiment_by_name("blobs")
    runs = client.search_runs([exp.experiment_id], "tags.`doodl.role` = 'group'")
    assert len(runs) == 2
    for run in runs:
        assert "early_outcome_accuracy_f10" in run.data.metrics and "early_final_acc_mae_f10" in run.data.metrics
    parent = client.search_runs([exp.experiment_id], "tags.`doodl.role` = 'parent'")[0]
    assert "early_outcome_accuracy_f10" in parent.data.metrics
    assert parent.data.metrics["early_outcome_chance"] < 1.0
