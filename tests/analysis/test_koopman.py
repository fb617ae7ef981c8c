"""Koopman spectra by exact DMD, their distance, and the conjugacy rule, on systems whose
spectrum the maths gives."""

import numpy as np
import pytest

from doodl.analysis import koopman
from doodl.analysis.koopman import conjugacy, delay_embed, koopman_eigenvalues, spectral_distance
from tests.analysis.known_optimisers import bisection, gradient_descent_log, mirror_descent


def _linear_runs(a: np.ndarray, n_runs: int, steps: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n_runs):
        x = np.empty((steps, len(a)))
        x[0] = rng.normal(size=len(a))
        for t in range(1, steps):
            x[t] = a @ x[t - 1]
        runs.append(x)
    return runs


def _rotation_and_decay() -> tuple[np.ndarray, np.ndarray]:
    """A 4-d linear map with a complex pair (0.9 e^{+-0.3i}) and two real eigenvalues,
    in a random basis: its eigenvalues are known exactly."""
    r, th = 0.9, 0.3
    block = np.zeros((4, 4))
    block[:2, :2] = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    block[2, 2], block[3, 3] = 0.7, -0.5
    basis = np.random.default_rng(1).normal(size=(4, 4))
    a = basis @ block @ np.linalg.inv(basis)
    truth = np.array([r * np.exp(1j * th), r * np.exp(-1j * th), 0.7, -0.5])
    return a, truth


def _matched(found: np.ndarray, truth: np.ndarray) -> float:
    """Largest error of the best one-to-one match of two eigenvalue sets."""
    cost = np.abs(found[:, None] - truth[None, :])
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].max())


@pytest.mark.parametrize("delays", [0, 3])
def test_a_linear_map_gives_back_its_eigenvalues(delays):
    a, truth = _rotation_and_decay()
    eigs = koopman_eigenvalues(_linear_runs(a, n_runs=3, steps=25), delays=delays, rank=None)
    # delays add no new direction to a linear system's data: its rank stays 4
    assert len(eigs) == 4
    assert _matched(eigs, truth) < 1e-6


def test_rank_truncation_keeps_the_slowest_modes():
    """With rank 2 on a system whose two slow modes carry nearly all the variance, the
    two eigenvalues found are the slow ones, off only by the small share of the fast modes
    in the kept directions (a truncated DMD is a projection)."""
    a = np.diag([0.99, 0.98, 0.2, 0.1])
    runs = _linear_runs(a, n_runs=4, steps=40)
    eigs = koopman_eigenvalues(runs, delays=0, rank=2)
    assert _matched(eigs, np.array([0.99, 0.98])) < 5e-3


@pytest.mark.parametrize("path", ["snapshots", "randomized"])
def test_the_fast_svds_give_the_full_svds_eigenvalues(monkeypatch, path):
    """A 4-d system seen through 3,000 random observables (a tall snapshot matrix): the
    method of snapshots, or the randomized rank-4 SVD, find the full SVD's eigenvalues."""
    a, truth = _rotation_and_decay()
    lift = np.random.default_rng(2).normal(size=(4, 3000))
    runs = [r @ lift for r in _linear_runs(a, n_runs=4, steps=30)]
    monkeypatch.setattr(koopman, "GRAM_MAX_COLUMNS", 0)
    monkeypatch.setattr(koopman, "RANDOMIZED_ABOVE", 10**12)
    full = koopman_eigenvalues(runs, delays=0, rank=4)
    if path == "snapshots":
        monkeypatch.setattr(koopman, "GRAM_MAX_COLUMNS", 512)
    else:
        monkeypatch.setattr(koopman, "RANDOMIZED_ABOVE", 1000)
    fast = koopman_eigenvalues(runs, delays=0, rank=4)
    assert _matched(full, truth) < 1e-6
    assert _matched(fast, truth) < 1e-6
    # with no rank cap the method of snapshots still finds the system's rank: 4
    if path == "snapshots":
        assert len(koopman_eigenvalues(runs, delays=1, rank=None)) == 4


def test_mirror_and_gradient_descent_are_conjugate_and_bisection_is_not():
    """Redman et al.'s validation case: OMD and OGD in log coordinates are conjugate
    (distance of order 0.01), bisection is not (of order 0.7)."""
    omd, ogd, bm = (koopman_eigenvalues(f(), delays=4, rank=8) for f in (mirror_descent, gradient_descent_log,
                                                                           bisection))
    close = spectral_distance(omd, ogd)
    far = min(spectral_distance(omd, bm), spectral_distance(ogd, bm))
    assert close < 0.03
    assert far > 0.5
    assert far / close >= 20


def test_spectral_distance_is_the_optimal_assignment():
    a = np.array([1.0, 1j])
    b = np.array([1j + 0.1, 1.0 + 0.3])  # matched crosswise: (0.3 + 0.1) / 2
    assert spectral_distance(a, b) == pytest.approx(0.2)
    assert spectral_distance(a, a[::-1]) == 0.0
    # sets of different sizes: {0} against {1, 3} is the mean distance 2
    assert spectral_distance(np.array([0.0]), np.array([1.0, 3.0])) == pytest.approx(2.0)
    assert spectral_distance(b, a) == pytest.approx(spectral_distance(a, b))
    with pytest.raises(ValueError, match="non-empty"):
        spectral_distance(np.array([]), a)


def test_delay_embedding_puts_later_states_side_by_side():
    x = np.arange(10.0).reshape(5, 2)
    z = delay_embed(x, 2)
    assert z.shape == (3, 6)
    np.testing.assert_array_equal(z[0], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(z[-1], [4, 5, 6, 7, 8, 9])


def test_too_short_or_still_trajectories_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="shorter than delays"):
        koopman_eigenvalues([np.zeros((4, 2))], delays=4)
    with pytest.raises(ValueError, match="do not move"):
        koopman_eigenvalues([np.zeros((20, 2))], delays=1)


def test_conjugacy_groups_seeds_of_one_system_apart_from_another():
    """Seeds of two configurations of one linear system (a change of basis) and of a
    different system: the first two are one class, the third another."""
    a, _ = _rotation_and_decay()
    b = np.diag([0.3, -0.2, 0.1, 0.05])
    rng = np.random.default_rng(3)

    def seeds(m, offset):
        return [koopman_eigenvalues([r + 1e-4 * rng.normal(size=r.shape)], delays=1, rank=4)
                for r in _linear_runs(m, n_runs=4, steps=30, seed=offset)]

    basis = rng.normal(size=(4, 4))
    same = basis @ a @ np.linalg.inv(basis)
    result = conjugacy([seeds(a, 0), seeds(same, 10), seeds(b, 20)])
    assert result.conjugate[0, 1] and not result.conjugate[0, 2] and not result.conjugate[1, 2]
    assert result.classes[0] == result.classes[1] != result.classes[2]
    assert list(result.classes) == [0, 0, 1]  # numbered in order of each class's first group
    # the spread sits on the diagonal; the ratio is the cross distance over the larger spread
    assert result.ratio[0, 2] == pytest.approx(result.distance[0, 2] / max(result.distance[0, 0],
                                                                             result.distance[2, 2]))


def test_a_group_without_a_spread_borrows_the_others_and_two_never_match():
    e = [np.array([0.9, 0.5])]
    result = conjugacy([e, [np.array([0.9, 0.5]), np.array([0.91, 0.5])], e])
    assert result.conjugate[0, 1]  # judged by group 1's spread
    assert not result.conjugate[0, 2]  # neither has a spread: no verdict, not conjugate
    assert np.isnan(result.distance[0, 0])
