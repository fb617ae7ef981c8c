"""PCA of a group's snapshots: one shared set of coordinates for all its runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Projection:
    """``x = (theta - mean) @ components.T``; rows of ``components`` are unit vectors."""

    mean: np.ndarray
    components: np.ndarray  # (d, P)
    explained_variance_ratio: np.ndarray  # (d,)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        return (np.asarray(theta, dtype=np.float64) - self.mean) @ self.components.T


def fit_pca(snapshots: np.ndarray, dims: int) -> Projection:
    """Fit PCA with ``dims`` components to an (n, P) array of snapshots.

    Signs are fixed (the largest-magnitude loading of each component is positive) so the
    same data always gives the same picture.
    """
    x = np.asarray(snapshots, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 snapshots as an (n, P) array, got shape {x.shape}")
    if dims > min(x.shape):
        raise ValueError(f"cannot project {x.shape[0]} snapshots of {x.shape[1]} parameters to {dims} dimensions")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:dims]
    flip = np.sign(comps[np.arange(dims), np.abs(comps).argmax(axis=1)])
    comps = comps * flip[:, None]
    var = s**2
    ratio = var[:dims] / var.sum() if var.sum() > 0 else np.zeros(dims)
    return Projection(mean, comps, ratio)
