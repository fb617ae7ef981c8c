"""Data-quality transforms of a variant's training set: class imbalance and pair label noise.

They derive a variant's training labels/positions from its seed (through ``seed_stream``
with streams of their own, so adding one of these axes never changes the draws of the
existing subset/noise/batch streams). Input noise and augmentation act on drawn batches:
``doodl.workers._batch_transforms``.

Every transform has a neutral setting (``ratio=1``, ``fraction=0``, ``std=0``, ``pad=0`` and
no flips) that reproduces the untransformed data exactly, so a sweep containing the neutral
value of an axis is bit-identical to a sweep without that axis.
"""

from __future__ import annotations

import numpy as np

from doodl.workers.seeds import STREAM_IMBALANCE, STREAM_PAIR_NOISE, seed_stream


def _check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64, copy=False)


def imbalance_counts(labels: np.ndarray, n_classes: int, ratio: float) -> np.ndarray:
    """Return how many samples each class keeps under the long-tailed profile (Cui et al. 2019).

    With ``m`` the size of the smallest class present in ``labels``, class ``c`` keeps
    ``round(m * ratio ** (c / (C - 1)))`` samples, at least 1 (0 for a class with no samples).
    Rounding is Python's ``round`` (half to even), as in ``variant_training_set``.
    """
    labels = _check_labels(labels, n_classes)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    available = np.bincount(labels, minlength=n_classes)
    present = available[available > 0]
    if present.size == 0:
        return np.zeros(n_classes, dtype=np.int64)
    m = int(present.min())
    # the profile is anchored at the smallest class so every target count is available
    # (m * ratio**e <= m <= n_c); C == 1 has a single class at exponent 0
    span = max(n_classes - 1, 1)
    counts = np.array(
        [max(1, int(round(m * ratio ** (c / span)))) for c in range(n_classes)], dtype=np.int64
    )
    return np.minimum(counts, available)  # absent classes keep 0


def imbalanced_indices(labels: np.ndarray, n_classes: int, ratio: float, seed: int) -> np.ndarray:
    """Return sorted int64 positions into ``labels`` of a long-tailed subset (Cui et al. 2019).

    Class ``c`` (in order ``0..C-1``) keeps exactly ``imbalance_counts(...)[c]`` of its samples,
    ``round(m * ratio ** (c / (C - 1)))`` with ``m`` the smallest class size present, at least 1,
    chosen without replacement from the seed's ``STREAM_IMBALANCE`` stream. ``ratio`` is the
    tail-to-head size ratio in ``(0, 1]``; ``1.0`` returns ``np.arange(len(labels))`` with no
    draw, so a balanced sweep is bit-identical to one without the imbalance axis (even when
    the classes were unequal to begin with).
    """
    labels = _check_labels(labels, n_classes)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if ratio == 1.0:
        return np.arange(len(labels), dtype=np.int64)
    counts = imbalance_counts(labels, n_classes, ratio)
    rng = seed_stream(seed, STREAM_IMBALANCE)
    kept = []
    for c in range(n_classes):
        where = np.flatnonzero(labels == c)
        if counts[c]:
            # one draw per class, classes in a fixed order: the draw of class c does not
            # depend on the sizes of the others beyond m
            kept.append(rng.choice(where, size=int(counts[c]), replace=False))
    if not kept:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(kept)).astype(np.int64)


def class_conditional_noise(labels: np.ndarray, n_classes: int, fraction: float, seed: int) -> np.ndarray:
    """Return a copy of ``labels`` with pair-flip noise (Han et al. 2018), as int64.

    Within each class ``c`` exactly ``round(fraction * n_c)`` labels, chosen without replacement
    from the seed's ``STREAM_PAIR_NOISE`` stream, become ``(c + 1) % n_classes``; all other
    labels are unchanged. Classes are selected on the original labels, so a sample moved
    into ``c + 1`` is never moved again. ``fraction`` is in ``[0, 1]``; ``0`` returns an
    unchanged copy without a draw. With ``n_classes == 1`` the pair class is the class itself,
    so nothing changes.
    """
    labels = _check_labels(labels, n_classes)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    out = labels.astype(np.int64, copy=True)
    if fraction == 0.0:
        return out
    rng = seed_stream(seed, STREAM_PAIR_NOISE)
    for c in range(n_classes):
        where = np.flatnonzero(labels == c)
        k = int(round(fraction * len(where)))
        if k:
            out[rng.choice(where, size=k, replace=False)] = (c + 1) % n_classes
    return out
