"""Data sets and the data-quality transforms a variant trains on.

A sweep names one base data set. It is split once into train and test parts by
``test_fraction`` and ``split_seed``, so every variant of the sweep sees the same
held-out split. Each variant then derives its own training set from its seed:
``train_fraction`` keeps a seeded subset, ``label_noise`` flips a seeded subset of
those labels to another class. Features are standardised with the statistics of
the full training split (fixed per sweep).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

BUILTIN_DATASETS = ("digits", "breast_cancer", "iris", "wine", "blobs", "moons")

# Independent random streams derived from a variant's seed (SeedSequence spawn keys).
STREAM_INIT, STREAM_SUBSET, STREAM_NOISE, STREAM_BATCHES, STREAM_PROJECTION = range(5)


def seed_stream(seed: int, stream: int) -> np.random.Generator:
    """Return the numpy generator of one named random stream of a seed."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


@dataclass(frozen=True)
class SplitData:
    """The sweep-wide train/test split of a base data set (float32 features, int64 labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


@dataclass(frozen=True)
class VariantData:
    """One variant's training set: indices into the split's train part and its labels."""

    indices: np.ndarray  # int64, positions in SplitData.x_train
    labels: np.ndarray  # int64, same length as indices (noisy where flipped)


def _load_raw(name: str, options: tuple[tuple[str, object], ...]) -> tuple[np.ndarray, np.ndarray]:
    opts = dict(options)
    if name in ("digits", "breast_cancer", "iris", "wine"):
        from sklearn import datasets as skd

        loader = getattr(skd, f"load_{name}")
        bunch = loader()
        return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)
    if name == "blobs":
        from sklearn.datasets import make_blobs

        x, y = make_blobs(
            n_samples=int(opts.get("n_samples", 1000)),
            n_features=int(opts.get("n_features", 8)),
            centers=int(opts.get("centers", 4)),
            cluster_std=float(opts.get("cluster_std", 2.0)),
            random_state=int(opts.get("random_state", 0)),
        )
        return x, y.astype(np.int64)
    if name == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(
            n_samples=int(opts.get("n_samples", 1000)),
            noise=float(opts.get("noise", 0.2)),
            random_state=int(opts.get("random_state", 0)),
        )
        return x, y.astype(np.int64)
    path = Path(name)
    with np.load(path, allow_pickle=False) as npz:
        if "x" not in npz or "y" not in npz:
            raise ValueError(f"{path}: an .npz data set needs arrays 'x' and 'y'")
        x = np.asarray(npz["x"], dtype=np.float64).reshape(len(npz["x"]), -1)
        y = np.asarray(npz["y"]).astype(np.int64)
    return x, y


@lru_cache(maxsize=8)
def load_split(
    name: str,
    test_fraction: float,
    split_seed: int,
    options: tuple[tuple[str, object], ...] = (),
) -> SplitData:
    """Load a base data set and split it into the sweep's fixed train and test parts.

    ``name`` is a built-in (see ``BUILTIN_DATASETS``) or a path to an ``.npz`` file with
    arrays ``x`` (samples first) and ``y`` (integer labels). ``options`` are generator
    parameters for the generated sets (``n_samples``, ``n_features``, ...).
    """
    x, y = _load_raw(name, options)
    classes, y = np.unique(y, return_inverse=True)
    rng = np.random.default_rng(np.random.SeedSequence([int(split_seed), 0x5E1F]))
    order = rng.permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # constant pixels (digits) stay zero instead of NaN
    x = (x - mean) / std
    return SplitData(
        x_train=x[train].astype(np.float32),
        y_train=y[train].astype(np.int64),
        x_test=x[test].astype(np.float32),
        y_test=y[test].astype(np.int64),
        n_classes=int(len(classes)),
    )


def variant_training_set(
    split: SplitData, *, seed: int, train_fraction: float, label_noise: float
) -> VariantData:
    """Derive a variant's training set: a seeded subset, then seeded label flips.

    ``round(label_noise * n)`` labels of the subset are replaced by a different class
    drawn uniformly, so the flipped fraction is exact, not just expected.
    """
    n_all = len(split.y_train)
    n = max(1, int(round(train_fraction * n_all)))
    if n < n_all:
        indices = np.sort(seed_stream(seed, STREAM_SUBSET).choice(n_all, size=n, replace=False))
    else:
        indices = np.arange(n_all)
    labels = split.y_train[indices].copy()
    n_flip = int(round(label_noise * n))
    if n_flip:
        rng = seed_stream(seed, STREAM_NOISE)
        flip = rng.choice(n, size=n_flip, replace=False)
        # an offset in [1, C) guarantees the new label differs from the old one
        offset = rng.integers(1, split.n_classes, size=n_flip)
        labels[flip] = (labels[flip] + offset) % split.n_classes
    return VariantData(indices=indices.astype(np.int64), labels=labels)


class BatchStream:
    """Seeded minibatch indices of one variant: epochs of shuffled positions, chunked.

    Batches are consecutive chunks of the concatenated per-epoch permutations, so a batch
    may straddle an epoch boundary and every step uses exactly ``batch_size`` samples.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self._n = n
        self._batch = batch_size
        self._rng = seed_stream(seed, STREAM_BATCHES)
        self._buffer = np.empty(0, dtype=np.int64)

    def take(self, steps: int) -> np.ndarray:
        """Return the positions of the next ``steps`` batches, shape ``(steps, batch_size)``."""
        need = steps * self._batch
        parts = [self._buffer]
        have = len(self._buffer)
        while have < need:
            perm = self._rng.permutation(self._n)
            parts.append(perm)
            have += self._n
        flat = np.concatenate(parts)
        self._buffer = flat[need:]
        return flat[:need].reshape(steps, self._batch)
