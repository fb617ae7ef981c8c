"""MORALS-style latent dynamics on maps whose attractors are known analytically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from doodl.analysis._latent import LatentDynamics

torch.set_num_threads(1)


def iterate(model: LatentDynamics, z: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        z = model.latent_map(z)
    return z


def double_well_runs(runs: int = 32, steps: int = 60, dim: int = 40, h: float = 0.05, seed: int = 0):
    """Gradient descent with step h on V = (x0^2 - 1)^2 / 4 + sum_{i>0} x_i^2 / 2 from uniform
    starts in [-1.5, 1.5]^dim: minima at x0 = +-1 (other coordinates 0), saddle at the origin.
    Returns the trajectories, (runs, steps + 1, dim)."""
    x = np.random.default_rng(seed).uniform(-1.5, 1.5, (runs, dim))
    traj = [x]
    for _ in range(steps):
        grad = x.copy()
        grad[:, 0] = x[:, 0] ** 3 - x[:, 0]
        x = x - h * grad
        traj.append(x)
    return np.stack(traj, axis=1)


def contraction_runs(runs: int = 32, steps: int = 30, dim: int = 20, embed: int | None = None, seed: int = 0):
    """x -> A x with A = Q diag(0.5 .. 0.9) Q^T (Q a random rotation): one attracting fixed
    point, the origin. With ``embed``, the states are placed in R^embed by a random isometry.
    Returns the trajectories and the map from R^dim to the state space."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    a = q @ np.diag(np.linspace(0.5, 0.9, dim)) @ q.T
    x = rng.uniform(-1, 1, (runs, dim))
    traj = [x]
    for _ in range(steps):
        x = x @ a.T
        traj.append(x)
    iso = np.linalg.qr(rng.normal(size=(embed, dim)))[0] if embed else np.eye(dim)
    return np.stack(traj, axis=1) @ iso.T, iso


def pairs(traj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = traj.shape[2]
    return traj[:, :-1].reshape(-1, d), traj[:, 1:].reshape(-1, d)


@pytest.fixture(scope="module")
def double_well():
    traj = double_well_runs()
    model = LatentDynamics().fit(*pairs(traj))
    # runs that started next to the saddle and are still on their way after 60 steps (3 of 32
    # here) have no final state at a well to compare with; the others end within 0.03 of it
    done = np.abs(traj[:, -1, 0]) > 0.9
    assert done.sum() >= 28
    return traj[done], model


def test_double_well_latent_map_sends_runs_to_their_own_well(double_well):
    traj, model = double_well
    well = np.sign(traj[:, -1, 0])
    final = model.encode(traj[:, -1])
    end = iterate(model, model.encode(traj[:, 0]), 500)
    own = np.linalg.norm(end - final, axis=1)
    other = np.array([np.linalg.norm(final[well != well[i]] - end[i], axis=1).min() for i in range(len(traj))])
    # Chance is 1/2. A 2-D latent of one-step pairs from 32 runs is not exactly Markov (encoded
    # paths cross), so a few runs whose start is dominated by the 39 decaying coordinates are
    # sent across: measured 0-4 of 29 over model seeds and data sets, 4 for this one.
    right = own < other
    assert right.mean() >= 0.8, f"runs sent to the other well start at x0 = {traj[~right, 0, 0]}"
    # and the runs it gets right end at the well's bottom, not merely nearer to it than to the other
    assert np.median(own[right] / other[right]) < 0.1


def test_double_well_wells_are_distinct_points_of_the_latent_box(double_well):
    traj, model = double_well
    well = np.sign(traj[:, -1, 0])
    final = model.encode(traj[:, -1])
    centres = [final[well == s].mean(axis=0) for s in (-1, 1)]
    spread = max(np.linalg.norm(final[well == s] - c, axis=1).max() for s, c in zip((-1, 1), centres))
    assert np.linalg.norm(centres[0] - centres[1]) > 3 * spread


def test_double_well_latent_map_keeps_the_box(double_well):
    _, model = double_well
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 41)] * 2), axis=-1).reshape(-1, 2)
    image = model.latent_map(grid)  # corners included: the map must stay finite there
    assert image.shape == grid.shape and image.dtype == np.float64
    assert np.all(np.isfinite(image)) and np.all(np.abs(image) <= 1)
    assert np.array_equal(model.lower, [-1, -1]) and np.array_equal(model.upper, [1, 1])


@pytest.mark.parametrize("embed", [None, 2000])
def test_linear_contraction_has_one_attracting_point_the_encoded_origin(embed):
    traj, iso = contraction_runs(embed=embed)
    model = LatentDynamics().fit(*pairs(traj))
    origin = model.encode(np.zeros((1, traj.shape[2])))
    fresh = np.random.default_rng(1).uniform(-1, 1, (32, iso.shape[1])) @ iso.T  # unseen starts
    starts = model.encode(np.concatenate([traj[:, 0], fresh]))
    assert np.linalg.norm(starts - origin, axis=1).max() > 0.5  # the encoding did not collapse
    end = iterate(model, starts, 500)
    assert np.linalg.norm(end - origin, axis=1).max() < 0.03
    # nowhere in the box is there a second attractor
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 21)] * 2), axis=-1).reshape(-1, 2)
    assert np.linalg.norm(iterate(model, grid, 500) - origin, axis=1).max() < 0.03


def small_problem():
    traj, _ = contraction_runs(runs=8, steps=10, dim=6)
    return pairs(traj)


def test_same_seed_gives_identical_fits_and_leaves_global_rng_alone():
    x, y = small_problem()
    before = torch.random.get_rng_state()
    a = LatentDynamics(epochs=5, seed=3).fit(x, y)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = LatentDynamics(epochs=5, seed=3).fit(x, y)
    c = LatentDynamics(epochs=5, seed=4).fit(x, y)
    assert np.array_equal(a.encode(x), b.encode(x))
    assert np.array_equal(a.latent_map(a.encode(x)), b.latent_map(b.encode(x)))
    assert not np.array_equal(a.encode(x), c.encode(x))


def test_shapes_and_range():
    x, y = small_problem()
    model = LatentDynamics(dims=3, epochs=5).fit(x, y)
    z = model.encode(x[:7])
    assert z.shape == (7, 3) and z.dtype == np.float64 and np.all(np.abs(z) <= 1)
    assert model.latent_map(z).shape == (7, 3)
    assert model.lower.shape == model.upper.shape == (3,)


def test_bad_input_raises_clear_errors():
    x, y = small_problem()
    with pytest.raises(ValueError, match="same shape"):
        LatentDynamics().fit(x, y[:-1])
    with pytest.raises(ValueError, match="same shape"):
        LatentDynamics().fit(x[:, 0], y[:, 0])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="x has 1 NaN"):
        LatentDynamics().fit(bad, y)
    with pytest.raises(ValueError, match="y has 1 NaN"):
        LatentDynamics().fit(x, np.where(bad == bad, y, np.inf))
    with pytest.raises(RuntimeError, match="not fitted"):
        LatentDynamics().encode(x)
    model = LatentDynamics(epochs=1).fit(x, y)
    with pytest.raises(ValueError, match=r"states must be \(m, 6\)"):
        model.encode(x[:, :4])
    with pytest.raises(ValueError, match=r"z must be \(m, 2\)"):
        model.latent_map(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="weights"):
        LatentDynamics(weights=(0.0, 0.0, 0.0))
