"""Early stopping inside a unit: the variants a rule finds doomed end at its step as
``stopped`` with their state there, the others train exactly as they would have."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from doodl.analysis.early_outcome import FRACTIONS, early_features, early_runs
from doodl.workers import shards
from doodl.workers.config import VariantConfig
from doodl.workers.early_stop import StopRule, fit_stop_rule, unit_features
from doodl.workers.engine import train_unit

STEPS = 120


def _configs(model: str = "mlp", **extra) -> list[VariantConfig]:
    return [VariantConfig(dataset="digits", test_fraction=0.2, split_seed=0, model=model, width=8,
                          depth=1 if model == "cnn" else 2, optimizer="sgd", lr=lr, train_fraction=1.0,
                          weight_decay=0.0, batch_size=32, steps=STEPS, seed=seed, label_noise=noise,
                          record_every=10, **extra)
            for lr in (0.05, 0.5) for seed in range(2) for noise in (0.0, 0.4)]


def _on_train_acc(threshold: float, at: float = 0.1) -> StopRule:
    """A rule that predicts a run's final accuracy as its train accuracy at ``at``."""
    return StopRule(at, threshold, (0.0,) * 6, (1.0,) * 6, (0.0, 1.0, 0.0, 0.0, 0.0, 0.0), 0.0)


@pytest.mark.parametrize("model, extra", [("mlp", {}), ("cnn", {}),
                                          ("mlp", {"schedule": "cosine", "input_noise": 0.1})])
def test_kept_variants_train_bit_for_bit_as_without_the_rule_and_stopped_ones_end_at_the_step(model, extra):
    configs = _configs(model, **extra)
    full = train_unit(configs)
    stop_at = int(round(0.1 * STEPS))
    threshold = float(np.median(full.acc[:, stop_at]))
    rule = _on_train_acc(threshold)
    stopped = train_unit(configs, stop=rule)
    doomed = full.acc[:, stop_at] < threshold
    assert 0 < doomed.sum() < len(configs)
    assert stopped.status == ["stopped" if d else "ok" for d in doomed]
    for v, d in enumerate(doomed):
        if not d:  # the kept variants' whole records are the unstopped unit's
            for name in ("loss", "acc", "grad_norm"):
                np.testing.assert_array_equal(getattr(stopped, name)[v], getattr(full, name)[v])
            np.testing.assert_array_equal(stopped.snapshots[:, v], full.snapshots[:, v])
            np.testing.assert_array_equal(stopped.test_acc[:, v], full.test_acc[:, v])
            np.testing.assert_array_equal(stopped.final_params[v], full.final_params[v])
            for k in full.final_metrics:
                assert stopped.final_metrics[k][v] == full.final_metrics[k][v]
            continue
        assert stopped.last_step[v] == stop_at
        np.testing.assert_array_equal(stopped.loss[v, : stop_at + 1], full.loss[v, : stop_at + 1])
        assert np.isnan(stopped.loss[v, stop_at + 1:]).all()
    if extra:  # a schedule's rates depend on the run's length
        return
    # a stopped variant ends with the parameters and metrics of a run of stop_at steps
    short = train_unit([dataclasses.replace(c, steps=stop_at) for c in configs])
    for v in np.flatnonzero(doomed):
        np.testing.assert_allclose(stopped.final_params[v], short.final_params[v], rtol=0, atol=1e-6)
        for k in short.final_metrics:
            assert stopped.final_metrics[k][v] == pytest.approx(short.final_metrics[k][v], abs=1e-6)


def test_a_unit_whose_variants_are_all_doomed_ends_at_the_step():
    configs = _configs()[:2]
    result = train_unit(configs, stop=_on_train_acc(2.0))
    assert result.status == ["stopped", "stopped"]
    assert (result.last_step == round(0.1 * STEPS)).all()
    assert np.isfinite(result.final_metrics["final_test_acc"]).all()


def test_stopped_runs_are_written_as_stopped_with_their_steps_so_far(tmp_path):
    configs = _configs()
    result = train_unit(configs, stop=_on_train_acc(float(np.median(train_unit(configs).acc[:, 12]))))
    fs, root = shards.resolve_filesystem(str(tmp_path))
    shards.write_unit(fs, root, "u0", result)
    finals = shards.read_units(fs, root, shards.FINALS, ["u0"], ["run_id", "status", "steps"]).to_pylist()
    by_id = {r["run_id"]: r for r in finals}
    traj = shards.read_units(fs, root, shards.TRAJECTORIES, ["u0"], ["run_id", "step", "status"]).to_pylist()
    for rid, status, last in zip(result.run_ids, result.status, result.last_step):
        assert by_id[rid]["status"] == status and by_id[rid]["steps"] == last
        rows = [r for r in traj if r["run_id"] == rid]
        assert len(rows) == last + 1 and rows[-1]["status"] == status
    assert {r["status"] for r in finals} == {"ok", "stopped"}


def test_features_in_the_engine_are_the_early_analysis_features():
    configs = _configs()
    result = train_unit(configs)
    step = int(round(0.1 * STEPS))
    n = int(np.searchsorted(result.snapshot_steps, step, side="right"))
    inside = unit_features(step, result.loss, result.acc, result.grad_norm, result.snapshot_steps[:n],
                           result.snapshots[:n], result.test_acc[:n])
    runs = early_runs(result, ["g"] * len(configs), [0] * len(configs))
    np.testing.assert_allclose(inside, np.stack([early_features(r, 0.1) for r in runs]), rtol=1e-12)


def test_a_fitted_rule_recovers_a_linear_law_and_keeps_the_share_asked_for():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * [1, 2, 3, 4, 5, 6] + 10
    y = 0.5 + 0.03 * (x[:, 1] - 10) - 0.01 * (x[:, 4] - 10)
    rule = fit_stop_rule(x, y, at=FRACTIONS[1], keep=0.4, alpha=1e-6)
    np.testing.assert_allclose(rule.predict(x), np.clip(y, 0, 1), atol=1e-6)
    assert rule.doomed(x).mean() == pytest.approx(0.6, abs=0.01)
    assert StopRule.from_dict(rule.to_dict()) == rule
    assert not fit_stop_rule(x, y, at=0.1, keep=1.0, alpha=1.0).doomed(x).any()
    # ranked by the unclipped score: predictions past 1 do not tie at the top
    high = fit_stop_rule(x, y + 0.6, at=0.1, keep=0.5, alpha=1e-6)
    assert (high.predict(x) == 1.0).mean() > 0.5 and high.doomed(x).mean() == pytest.approx(0.5, abs=0.01)
