"""Data sets and the data-quality transforms a variant trains on.

A sweep names one base data set. It is split once into train and test parts by
``test_fraction`` and ``split_seed`` (data sets that ship their own test set, MNIST and
CIFAR, keep it), so every variant of the sweep sees the same held-out split. Each variant
then derives its own training set from its seed: ``class_imbalance`` keeps a long-tailed
seeded subset, ``train_fraction`` a seeded subset of that, ``label_noise`` flips a seeded
subset of those labels (to any other class, or class c to c+1 with ``pair`` noise). Features
are standardised with the statistics of the training split (fixed per sweep): per feature
for tables and the 8x8 digits, per channel for image files; token sets are left as ids.
Input noise and augmentation act on each drawn batch, in the engine.
"""

from __future__ import annotations

import itertools
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from doodl.workers._data_quality import class_conditional_noise, imbalanced_indices
from doodl.workers.config import VariantConfig
from doodl.workers.families import DataShape
from doodl.workers.seeds import STREAM_BATCHES, STREAM_NOISE, STREAM_SUBSET, seed_stream

TABULAR_DATASETS = ("digits", "breast_cancer", "iris", "wine", "blobs", "moons")
FILE_DATASETS = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}  # name -> classes
GENERATED_DATASETS = ("modular",)
BUILTIN_DATASETS = TABULAR_DATASETS + GENERATED_DATASETS
MODULAR_OPS = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
}


@dataclass(frozen=True)
class SplitData:
    """The sweep-wide train/test split of a base data set.

    Inputs are stored flat, one row per sample (float32 features and pixels, int64 token
    ids); ``input_shape`` is the shape a model sees per sample.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    input_shape: tuple[int, ...] = ()
    vocab: int = 0  # > 0: inputs are token ids

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def shape(self) -> DataShape:
        """What the data fixes about a model: input shape, classes, vocabulary."""
        return DataShape(self.input_shape or (self.n_features,), self.n_classes, self.vocab)


@dataclass(frozen=True)
class VariantData:
    """One variant's training set: indices into the split's train part and its labels."""

    indices: np.ndarray  # int64, positions in SplitData.x_train
    labels: np.ndarray  # int64, same length as indices (noisy where flipped)


@dataclass(frozen=True)
class _Raw:
    x: np.ndarray  # samples first
    y: np.ndarray
    input_shape: tuple[int, ...]
    vocab: int = 0
    test: tuple[np.ndarray, np.ndarray] | None = None  # a shipped test set
    per_channel: bool = False


def _load_raw(name: str, options: tuple[tuple[str, object], ...], path: str) -> _Raw:
    opts = dict(options)
    if name in ("digits", "breast_cancer", "iris", "wine"):
        from sklearn import datasets as skd

        bunch = getattr(skd, f"load_{name}")()
        x = np.asarray(bunch.data, dtype=np.float64)
        # the 8x8 digits are images: a CNN sees (1, 8, 8), an MLP the 64 pixels as before
        return _Raw(x, np.asarray(bunch.target, dtype=np.int64), (1, 8, 8) if name == "digits" else (x.shape[1],))
    if name == "blobs":
        from sklearn.datasets import make_blobs

        x, y = make_blobs(
            n_samples=int(opts.get("n_samples", 1000)),
            n_features=int(opts.get("n_features", 8)),
            centers=int(opts.get("centers", 4)),
            cluster_std=float(opts.get("cluster_std", 2.0)),
            random_state=int(opts.get("random_state", 0)),
        )
        return _Raw(x, y.astype(np.int64), (x.shape[1],))
    if name == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(
            n_samples=int(opts.get("n_samples", 1000)),
            noise=float(opts.get("noise", 0.2)),
            random_state=int(opts.get("random_state", 0)),
        )
        return _Raw(x, y.astype(np.int64), (2,))
    if name == "modular":
        return _modular(int(opts.get("p", 97)), str(opts.get("op", "add")))
    if name in FILE_DATASETS:
        from doodl.workers.image_files import load_cifar_dir, load_mnist_dir

        if not path:
            raise ValueError(f"data set {name} needs dataset.path: the directory holding its files")
        split = load_mnist_dir(path) if "mnist" in name else load_cifar_dir(path, FILE_DATASETS[name])
        n = len(split.x_train)
        return _Raw(split.x_train.reshape(n, -1), split.y_train, tuple(split.x_train.shape[1:]),
                    test=(split.x_test.reshape(len(split.x_test), -1), split.y_test), per_channel=True)
    return _load_npz(Path(name))


def _load_npz(file: Path) -> _Raw:
    """Read an ``.npz`` data set, refusing with ``ValueError("dataset file F: fault")`` any
    file that would train on something else than it holds: unreadable, arrays of the wrong
    shape or kind, non-finite features, or labels that are not one class index per sample."""
    where = f"dataset file {file}"
    if file.is_file() and file.stat().st_size == 0:
        raise ValueError(f"{where}: empty file, not an .npz archive")
    try:
        npz = np.load(file, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"{where}: a single array, not an .npz archive with arrays 'x' and 'y'")
        with npz:
            if "x" not in npz or "y" not in npz:
                found = ", ".join(npz.files) or "none"
                raise ValueError(f"{where}: an .npz data set needs arrays 'x' and 'y' (found: {found})")
            x, y = npz["x"], npz["y"]
    except ValueError as exc:
        if str(exc).startswith(where):
            raise
        raise ValueError(f"{where}: not a readable .npz archive ({_first_line(exc)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{where}: not a readable .npz archive ({_first_line(exc)})") from None
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{where}: x holds no samples (shape {x.shape})")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
        raise ValueError(f"{where}: x must hold real numbers, got dtype {x.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{where}: y must be 1-D, one class label per sample; got shape {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} rows but y has {len(y)}")
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        n_bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"{where}: x has {n_bad} NaN or infinite value{'s' if n_bad > 1 else ''} "
                         f"(first in row {int(np.argmax(bad))})")
    return _Raw(x, _class_labels(y, where), (x.shape[1],))


def _class_labels(y: np.ndarray, where: str) -> np.ndarray:
    """``y`` as int64 class labels, if it holds whole non-negative numbers (floats included)."""
    if y.dtype == np.bool_:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            first, n_bad = int(np.argmin(whole)), int((~whole).sum())
            raise ValueError(f"{where}: y must hold whole-number class labels; {n_bad} "
                             f"{'is' if n_bad == 1 else 'are'} not (first {y[first]:g} in row {first})")
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: y must hold integer class labels, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise ValueError(f"{where}: y has negative labels (smallest {y.min():g}); classes are 0, 1, 2, ...")
    return y.astype(np.int64)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _modular(p: int, op: str) -> _Raw:
    """Every pair ``(a, b)`` of residues mod ``p`` as the tokens ``[a, b, =]`` (``=`` is token
    ``p``), labelled ``a op b mod p``: the grokking task of Power et al. (2022)."""
    if op not in MODULAR_OPS:
        raise ValueError(f"modular: unknown op {op!r}; one of {', '.join(MODULAR_OPS)}")
    if p < 2:
        raise ValueError(f"modular: p must be at least 2, got {p}")
    pairs = np.array(list(itertools.product(range(p), repeat=2)), dtype=np.int64)
    a, b = pairs[:, 0], pairs[:, 1]
    x = np.stack([a, b, np.full_like(a, p)], axis=1)
    return _Raw(x, MODULAR_OPS[op](a, b, p).astype(np.int64), (3,), vocab=p + 1)


@lru_cache(maxsize=8)
def load_split(
    name: str,
    test_fraction: float,
    split_seed: int,
    options: tuple[tuple[str, object], ...] = (),
    path: str = "",
) -> SplitData:
    """Load a base data set and split it into the sweep's fixed train and test parts.

    ``name`` is a built-in (see ``BUILTIN_DATASETS``), a file-based set (``FILE_DATASETS``,
    read from ``path``: a directory or any ``pyarrow.fs`` URI) or a path to an ``.npz`` file
    with arrays ``x`` (samples first) and ``y`` (integer labels). ``options`` are generator
    parameters (``n_samples``, ``n_features``, ``p``, ``op``, ...).
    """
    raw = _load_raw(name, options, path)
    if raw.test is not None:  # a shipped test set is the held-out split
        x_tr, y_tr = raw.x, raw.y
        x_te, y_te = raw.test
        classes = np.unique(np.concatenate([y_tr, y_te]))
        y_tr, y_te = np.searchsorted(classes, y_tr), np.searchsorted(classes, y_te)
    else:
        classes, y = np.unique(raw.y, return_inverse=True)
        rng = np.random.default_rng(np.random.SeedSequence([int(split_seed), 0x5E1F]))
        order = rng.permutation(len(y))
        n_test = int(round(test_fraction * len(y)))
        test, train = order[:n_test], order[n_test:]
        x_tr, y_tr, x_te, y_te = raw.x[train], y[train], raw.x[test], y[test]
    if raw.vocab:
        x_tr, x_te = x_tr.astype(np.int64), x_te.astype(np.int64)
    else:
        x_tr, x_te = _standardise(x_tr, x_te, raw.input_shape if raw.per_channel else None)
    return SplitData(
        x_train=x_tr, y_train=y_tr.astype(np.int64), x_test=x_te, y_test=y_te.astype(np.int64),
        n_classes=int(len(classes)), input_shape=raw.input_shape, vocab=raw.vocab,
    )


def _standardise(x_tr: np.ndarray, x_te: np.ndarray, image_shape: tuple[int, ...] | None):
    """Standardise with the training split's statistics: per channel for image files,
    else per feature. Returns float32 arrays."""
    if image_shape is not None:
        c = image_shape[0]
        per_channel = x_tr.reshape(len(x_tr), c, -1).astype(np.float64)
        mean = np.repeat(per_channel.mean(axis=(0, 2)), x_tr.shape[1] // c)
        std = np.repeat(per_channel.std(axis=(0, 2)), x_tr.shape[1] // c)
    else:
        mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std = np.where(std == 0, 1.0, std)  # constant pixels (digits) stay zero instead of NaN
    return ((x_tr - mean) / std).astype(np.float32), ((x_te - mean) / std).astype(np.float32)


def dataset_split(cfg: VariantConfig) -> SplitData:
    """The sweep's train/test split of a variant's data set (cached)."""
    return load_split(cfg.dataset, cfg.test_fraction, cfg.split_seed, cfg.dataset_options, cfg.dataset_path)


def variant_data(split: SplitData, cfg: VariantConfig) -> VariantData:
    """A variant's training set under its config's data-quality axes."""
    return variant_training_set(split, seed=cfg.seed, train_fraction=cfg.train_fraction,
                                label_noise=cfg.label_noise, label_noise_kind=cfg.label_noise_kind,
                                class_imbalance=cfg.class_imbalance)


def variant_training_set(
    split: SplitData, *, seed: int, train_fraction: float, label_noise: float,
    label_noise_kind: str = "symmetric", class_imbalance: float = 1.0,
) -> VariantData:
    """Derive a variant's training set: a long-tailed subset, a seeded subset of it, then
    seeded label flips.

    ``class_imbalance`` r < 1 keeps ``round(m r^(c/(C-1)))`` samples of class c (m the
    smallest class). ``round(label_noise * n)`` labels of the subset are replaced: by a
    different class drawn uniformly (``symmetric``), or, per class c, ``round(label_noise
    * n_c)`` of its labels by c+1 mod C (``pair``). The counts are exact, not just expected.
    """
    base = imbalanced_indices(split.y_train, split.n_classes, class_imbalance, seed)
    n_all = len(base)
    n = max(1, int(round(train_fraction * n_all)))
    if n < n_all:
        indices = base[np.sort(seed_stream(seed, STREAM_SUBSET).choice(n_all, size=n, replace=False))]
    else:
        indices = base
    labels = split.y_train[indices].copy()
    if label_noise_kind == "pair":
        labels = class_conditional_noise(labels, split.n_classes, label_noise, seed)
    elif label_noise_kind != "symmetric":
        raise ValueError(f"unknown label_noise_kind {label_noise_kind!r}; symmetric or pair")
    else:
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
