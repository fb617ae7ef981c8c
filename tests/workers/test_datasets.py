"""Data sets and data-quality transforms: deterministic, exact, fixed test split."""

from __future__ import annotations

import numpy as np

from doodl.workers.datasets import BatchStream, load_split, variant_training_set
from doodl.workers.families import DataShape
from tests.workers.image_fixtures import write_cifar_bin, write_idx


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


def test_digits_are_1x8x8_images_and_tabular_sets_flat_rows():
    assert load_split("digits", 0.2, 0, ()).shape == DataShape((1, 8, 8), 10)
    assert load_split("iris", 0.2, 0, ()).shape == DataShape((4,), 3)


def test_modular_arithmetic_holds_every_pair_once_with_its_answer():
    split = load_split("modular", 0.3, 0, (("op", "add"), ("p", 7)))
    x = np.concatenate([split.x_train, split.x_test])
    y = np.concatenate([split.y_train, split.y_test])
    assert split.vocab == 8 and split.n_classes == 7 and split.shape.kind == "tokens"
    assert len(x) == 49 and len({tuple(r) for r in x.tolist()}) == 49
    assert (x[:, 2] == 7).all()  # the "=" token
    np.testing.assert_array_equal(y, (x[:, 0] + x[:, 1]) % 7)
    assert len(split.y_test) == round(0.3 * 49)
    sub = load_split("modular", 0.3, 0, (("op", "sub"), ("p", 5)))
    xs = np.concatenate([sub.x_train, sub.x_test])
    np.testing.assert_array_equal(np.concatenate([sub.y_train, sub.y_test]), (xs[:, 0] - xs[:, 1]) % 5)


def test_mnist_and_cifar_files_keep_their_own_test_sets_and_standardise_per_channel(tmp_path):
    rng = np.random.default_rng(0)
    mn = tmp_path / "mnist"
    imgs, labels = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), np.arange(30, dtype=np.uint8) % 10
    write_idx(str(mn / "train-images-idx3-ubyte.gz"), imgs, gzip=True)
    write_idx(str(mn / "train-labels-idx1-ubyte.gz"), labels, gzip=True)
    write_idx(str(mn / "t10k-images-idx3-ubyte"), imgs[:10])
    write_idx(str(mn / "t10k-labels-idx1-ubyte"), labels[:10])
    split = load_split("mnist", 0.2, 0, (), str(mn))
    assert split.shape == DataShape((1, 28, 28), 10) and len(split.y_train) == 30 and len(split.y_test) == 10
    np.testing.assert_array_equal(split.y_train, labels)
    expected = (imgs.astype(np.float64) - imgs.mean()) / imgs.std()  # one channel: one mean and std
    np.testing.assert_allclose(split.x_train, expected.reshape(30, -1), atol=1e-5)

    cf = tmp_path / "cifar-10-batches-bin"
    img3 = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    write_cifar_bin(str(cf / "data_batch_1.bin"), img3[:30], np.arange(30) % 10)
    write_cifar_bin(str(cf / "test_batch.bin"), img3[30:], np.arange(10))
    split = load_split("cifar10", 0.2, 0, (), str(tmp_path))
    assert split.shape == DataShape((3, 32, 32), 10) and len(split.y_test) == 10
    per_channel = split.x_train.reshape(30, 3, -1)
    np.testing.assert_allclose(per_channel.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(axis=(0, 2)), 1, atol=1e-4)


def test_class_imbalance_and_pair_noise_compose_with_the_subset_exactly():
    split = load_split("digits", 0.2, 0, ())
    d = variant_training_set(split, seed=5, train_fraction=1.0, label_noise=0.0, class_imbalance=0.1)
    counts = np.bincount(split.y_train[d.indices], minlength=10)
    m = np.bincount(split.y_train).min()
    np.testing.assert_array_equal(counts, [max(1, round(m * 0.1 ** (c / 9))) for c in range(10)])
    half = variant_training_set(split, seed=5, train_fraction=0.5, label_noise=0.0, class_imbalance=0.1)
    assert set(half.indices) <= set(d.indices) and len(half.indices) == round(0.5 * len(d.indices))
    pair = variant_training_set(split, seed=5, train_fraction=1.0, label_noise=0.3, label_noise_kind="pair")
    true = split.y_train[pair.indices]
    moved = pair.labels != true
    np.testing.assert_array_equal(pair.labels[moved], (true[moved] + 1) % 10)
    np.testing.assert_array_equal(np.bincount(true[moved], minlength=10),
                                  [round(0.3 * n) for n in np.bincount(true, minlength=10)])
    # neutral settings are bit-identical to the first release's derivation
    plain = variant_training_set(split, seed=5, train_fraction=0.7, label_noise=0.2)
    neutral = variant_training_set(split, seed=5, train_fraction=0.7, label_noise=0.2, class_imbalance=1.0,
                                   label_noise_kind="symmetric")
    np.testing.assert_array_equal(plain.indices, neutral.indices)
    np.testing.assert_array_equal(plain.labels, neutral.labels)
