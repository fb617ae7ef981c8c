"""Data-quality transforms of training sets: exact counts, known answers, neutral settings are identities."""

from __future__ import annotations

import numpy as np
import pytest

from doodl.workers._data_quality import class_conditional_noise, imbalance_counts, imbalanced_indices


def _balanced(n_classes: int = 10, per_class: int = 100) -> np.ndarray:
    # interleaved, so class membership is not a contiguous block
    return np.tile(np.arange(n_classes, dtype=np.int64), per_class)


# --- class imbalance -------------------------------------------------------------------------


def test_imbalance_counts_follow_the_long_tail_formula_exactly():
    labels = _balanced()
    idx = imbalanced_indices(labels, 10, 0.01, seed=0)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts[0] == 100 and counts[9] == 1
    assert counts[5] == round(100 * 0.01 ** (5 / 9)) == 8
    expected = [round(100 * 0.01 ** (c / 9)) for c in range(10)]
    assert counts.tolist() == expected == [100, 60, 36, 22, 13, 8, 5, 3, 2, 1]
    np.testing.assert_array_equal(imbalance_counts(labels, 10, 0.01), expected)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)  # sorted, no repeats


def test_imbalance_is_anchored_at_the_smallest_class_and_keeps_at_least_one():
    # class sizes 50, 30, 20: m = 20
    labels = np.repeat(np.arange(3), [50, 30, 20])
    idx = imbalanced_indices(labels, 3, 0.25, seed=1)
    assert np.bincount(labels[idx], minlength=3).tolist() == [20, 10, 5]
    tiny = imbalanced_indices(labels, 3, 1e-6, seed=1)
    assert np.bincount(labels[tiny], minlength=3).tolist() == [20, 1, 1]
    # an absent class keeps nothing; m is the smallest class *present*
    gappy = np.repeat(np.array([0, 2]), [40, 10])
    assert np.bincount(gappy[imbalanced_indices(gappy, 3, 0.5, 0)], minlength=3).tolist() == [10, 0, 5]


def test_imbalance_ratio_one_returns_every_index_without_a_draw():
    labels = np.repeat(np.arange(3), [50, 30, 20])  # unequal classes are kept as they are
    idx = imbalanced_indices(labels, 3, 1.0, seed=7)
    np.testing.assert_array_equal(idx, np.arange(100))
    assert idx.dtype == np.int64


def test_imbalance_is_deterministic_in_the_seed():
    labels = _balanced()
    a = imbalanced_indices(labels, 10, 0.1, seed=3)
    np.testing.assert_array_equal(a, imbalanced_indices(labels, 10, 0.1, seed=3))
    b = imbalanced_indices(labels, 10, 0.1, seed=4)
    assert len(a) == len(b) and not np.array_equal(a, b)


def test_imbalance_rejects_bad_ratios_and_labels():
    labels = _balanced(3, 5)
    for ratio in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError):
            imbalanced_indices(labels, 3, ratio, 0)
    with pytest.raises(ValueError):
        imbalanced_indices(labels, 2, 0.5, 0)  # label 2 is out of range


# --- pair-flip label noise -------------------------------------------------------------------


def test_pair_noise_flips_exactly_the_count_per_class_to_the_next_class():
    labels = np.repeat(np.arange(4), [100, 50, 30, 7])
    noisy = class_conditional_noise(labels, 4, 0.3, seed=0)
    assert noisy.dtype == np.int64 and noisy is not labels
    changed = noisy != labels
    for c, n_c in enumerate([100, 50, 30, 7]):
        in_c = labels == c
        assert changed[in_c].sum() == round(0.3 * n_c)  # 30, 15, 9, 2
        assert np.all(noisy[in_c & changed] == (c + 1) % 4)  # 3 wraps to 0
        assert np.all(noisy[in_c & ~changed] == c)
    assert changed.sum() == 30 + 15 + 9 + 2


def test_pair_noise_zero_is_an_unchanged_copy_and_seeds_matter():
    labels = _balanced(5, 20)
    clean = class_conditional_noise(labels, 5, 0.0, seed=0)
    np.testing.assert_array_equal(clean, labels)
    assert clean is not labels and not np.shares_memory(clean, labels)
    a = class_conditional_noise(labels, 5, 0.4, seed=1)
    np.testing.assert_array_equal(a, class_conditional_noise(labels, 5, 0.4, seed=1))
    assert not np.array_equal(a, class_conditional_noise(labels, 5, 0.4, seed=2))
    np.testing.assert_array_equal(labels, _balanced(5, 20))  # input not modified
    full = class_conditional_noise(labels, 5, 1.0, seed=0)
    np.testing.assert_array_equal(full, (labels + 1) % 5)
