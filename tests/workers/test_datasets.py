"""Data sets and data-quality transforms: deterministic, exact, fixed test split."""

from __future__ import annotations

import numpy as np

from workers.datasets import BatchStream, load_split, variant_training_set


def test_split_is_fixed_by_the_spec_and_standardised():
    a = load_split("digits", 0.2, 0, ())
    b = load_split("digits", 0.2, 0, ())
    c = load_split("digits", 0.2, 1, ())
    assert a.x_test.shape == (359, 64) and a.x_train.shape == (1438, 64) and a.n_classes == 10
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)
    np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-5)
    assert np.isfinite(a.x_train).all()  # constant pixels do not divide by zero


def test_label_noise_flips_exactly_that_fraction_deterministically():
    split = load_split("digits", 0.2, 0, ())
    d = variant_training_set(split, seed=3, train_fraction=1.0, label_noise=0.3)
    flipped = d.labels != split.y_train[d.indices]
    assert flipped.sum() == round(0.3 * len(d.indices))
    again = variant_training_set(split, seed=3, train_fraction=1.0, label_noise=0.3)
    np.testing.assert_array_equal(d.labels, again.labels)
    other = variant_training_set(split, seed=4, train_fraction=1.0, label_noise=0.3)
    assert not np.array_equal(d.labels, other.labels)
    clean = variant_training_set(split, seed=3, train_fraction=1.0, label_noise=0.0)
    np.testing.assert_array_equal(clean.labels, split.y_train)


def test_train_fraction_keeps_a_seeded_subset():
    split = load_split("iris", 0.2, 0, ())
    d = variant_training_set(split, seed=1, train_fraction=0.5, label_noise=0.0)
    assert len(d.indices) == 60 and len(np.unique(d.indices)) == 60
    np.testing.assert_array_equal(d.labels, split.y_train[d.indices])


def test_batch_stream_covers_each_epoch_once():
    s = BatchStream(n=10, batch_size=4, seed=0)
    first = s.take(5).ravel()  # 20 positions = two whole epochs
    assert sorted(first[:10]) == list(range(10)) and sorted(first[10:]) == list(range(10))
    np.testing.assert_array_equal(BatchStream(10, 4, 0).take(5).ravel(), first)
