"""The per-group pipeline: shared projection, snapshot pairs, surrogate map, verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from analysis._projection import fit_pca
from analysis._surrogate import TrainingMapSurrogate
from analysis.dynamics import MorseSettings, RunTrajectory, group_morse, snapshot_pairs


def embedded_double_well_runs(n_runs=12, n_steps=40, p=8, seed=0):
    """Gradient descent on a double well (minima at x = +-1), embedded in p dimensions
    by a random isometry plus an offset: what PCA must undo."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(p, 2)))
    offset = rng.normal(size=p)
    runs = []
    for k in range(n_runs):
        x = np.array([rng.uniform(0.3, 1.8) * (1 if k % 2 else -1), rng.uniform(-1.5, 1.5)])
        pts = []
        for _ in range(n_steps):
            pts.append(x.copy())
            x = np.array([x[0] - 0.2 * (x[0] ** 3 - x[0]), 0.8 * x[1]])
        runs.append(RunTrajectory(f"run{k}", np.arange(n_steps) * 10, np.array(pts) @ basis.T + offset))
    return runs


def test_pca_shares_coordinates_and_keeps_explained_variance():
    runs = embedded_double_well_runs()
    proj = fit_pca(np.concatenate([r.theta for r in runs]), 2)
    assert proj.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-9)  # the data are planar
    assert np.allclose(proj.components @ proj.components.T, np.eye(2), atol=1e-9)
    again = fit_pca(np.concatenate([r.theta for r in runs]), 2)
    assert np.array_equal(proj(runs[0].theta), again(runs[0].theta))  # signs are fixed


def test_pairs_skip_the_shorter_last_gap():
    run = RunTrajectory("r", np.array([0, 10, 20, 30, 35]), np.zeros((5, 3)))
    first, second = snapshot_pairs([run], tau=1)
    assert first[0].tolist() == [0, 1, 2] and second[0].tolist() == [1, 2, 3]
    first, second = snapshot_pairs([run], tau=2)
    assert first[0].tolist() == [0, 1] and second[0].tolist() == [2, 3]


def test_surrogate_interpolates_the_pairs_and_contracts_far_away():
    runs = embedded_double_well_runs()
    proj = fit_pca(np.concatenate([r.theta for r in runs]), 2)
    xs = [proj(r.theta) for r in runs]
    x = np.concatenate([p[:-1] for p in xs])
    y = np.concatenate([p[1:] for p in xs])
    s = TrainingMapSurrogate(far_field=0.5).fit(x, y)
    assert np.abs(s(x) - y).max() < 0.05 * np.abs(y).max()
    far = s.centre_ + 1e3 * s.scale_
    assert np.allclose(s(far[None])[0], s.centre_ + 0.5 * (far - s.centre_), rtol=1e-6)


def test_group_morse_finds_both_minima_and_every_run_ends_in_an_attractor():
    result = group_morse(embedded_double_well_runs(), MorseSettings(dims=2, subdiv_min=10, subdiv_max=16))
    g = result.graph
    finals = {v.run_id: v for v in result.verdicts}
    left = {finals[f"run{k}"].final_node for k in range(0, 12, 2)}
    right = {finals[f"run{k}"].final_node for k in range(1, 12, 2)}
    assert len(left) == 1 and len(right) == 1 and left != right  # one attractor per minimum
    assert left | right <= set(g.attractors)
    assert result.fidelity == 1.0
    assert all(g.conley_index(u) == [1, 0, 0] for u in left | right)
    assert any(g.conley_index(u) == [0, 1, 0] for u in g.nodes)  # the saddle between them


def test_group_morse_refuses_non_finite_snapshots_and_too_few_pairs():
    runs = embedded_double_well_runs(n_runs=2, n_steps=5)
    runs[0].theta[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        group_morse(runs)
    with pytest.raises(ValueError, match="snapshot pairs"):
        group_morse(embedded_double_well_runs(n_runs=2, n_steps=5), MorseSettings(tau=4))


def test_pictures_fall_back_to_dot_text_without_graphviz(monkeypatch):
    from analysis.dynamics import _pictures

    result = group_morse(embedded_double_well_runs(), MorseSettings(subdiv_min=8, subdiv_max=12))
    with_dot = _pictures(result, "with dot")
    assert set(with_dot) == {"morse_graph.dot", "morse_graph.svg", "morse_graph.png", "morse_sets.png"}
    monkeypatch.setenv("PATH", "/nonexistent")  # no `dot` program to be found
    without = _pictures(result, "without dot")
    assert set(without) == {"morse_graph.dot", "morse_sets.png"}
    assert without["morse_graph.dot"].decode().startswith("digraph")
