"""Outcome modes (``doodl.analysis._outcomes``): the labels a Morse graph is graded against, defined
from the runs' end states alone. Known answers: separated clusters are modes, a continuum is
one, piles a hair apart are one, and the numbering is by size."""

from __future__ import annotations

import numpy as np
import pytest

from doodl.analysis._outcomes import FLOOR, GAP, end_features, outcome_modes


def _cloud(rng, centre, n, spread):
    return np.asarray(centre, float) + spread * rng.standard_normal((n, len(centre)))


def test_separated_clusters_are_modes_numbered_by_size():
    rng = np.random.default_rng(0)
    ends = np.vstack([_cloud(rng, [0, 0], 5, 0.01), _cloud(rng, [1, 0], 12, 0.01), _cloud(rng, [0, 1], 3, 0.01)])
    o = outcome_modes(ends, travel=1.0)
    assert o.n_modes == 3 and o.sizes == [12, 5, 3]
    assert o.labels[:5].tolist() == [1] * 5 and o.labels[5:17].tolist() == [0] * 12 and o.labels[17:].tolist() == [2] * 3
    assert o.chance == 12 / 20


def test_a_continuum_of_ends_is_one_mode():
    """Seeds that memorise different noisy labels end spread evenly (no gap): one mode, as
    measured on examples/morse.yaml with label noise 0.3 (largest merge 1.1x the median)."""
    rng = np.random.default_rng(1)
    ends = rng.uniform(0, 1, size=(16, 20))  # evenly spread in 20 dimensions
    assert outcome_modes(ends, travel=1.0).n_modes == 1


def test_piles_a_hair_apart_are_one_mode_but_a_single_far_run_is_its_own():
    """Full-batch runs end 1e-4 apart (a median merge of almost nothing): differences far
    below what training resolves (FLOOR of the travel) do not split them; one run that ended
    elsewhere does split off."""
    rng = np.random.default_rng(2)
    pile = np.vstack([_cloud(rng, [0, 0], 10, 1e-4), _cloud(rng, [0.02, 0], 10, 1e-4)])
    assert 0.02 < GAP * FLOOR * 1.0  # the two piles are closer than the cut at travel 1
    assert outcome_modes(pile, travel=1.0).n_modes == 1
    far = np.vstack([pile, [[0.9, 0.0]]])
    o = outcome_modes(far, travel=1.0)
    assert o.n_modes == 2 and o.sizes == [20, 1] and o.labels[-1] == 1


def test_end_features_scale_and_travel():
    finals = np.array([[1.0, 0.0], [0.0, 1.0]])
    starts = np.zeros((2, 2))
    ends, travel = end_features(finals, starts, [np.array([0.5, 1.0]), np.array([0.7, 0.0])])
    assert ends.shape == (2, 4) and ends[:, 2:].tolist() == [[0.5, 0.7], [1.0, 0.0]] and travel == 1.0


def test_degenerate_inputs():
    assert outcome_modes(np.zeros((0, 3)), 1.0).n_modes == 0
    assert outcome_modes(np.ones((1, 3)), 1.0).labels.tolist() == [0]
    assert outcome_modes(np.ones((4, 3)), 0.0).labels.tolist() == [0] * 4  # nothing moved
    with pytest.raises(ValueError, match="NaN"):
        outcome_modes(np.array([[0.0], [np.nan]]), 1.0)
