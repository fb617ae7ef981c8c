"""Coordinates for a group's Morse graph: a few numbers per snapshot, shared by its runs.

The Morse graph is computed in ``dims`` coordinates fitted to the group's states (the
flattened parameters, or the model's outputs on a probe set for function-space
coordinates). Which coordinates decides whether the graph sees where runs go
(``docs/methods.md``, "Coordinates"; the comparison is in ``BENCHMARKS.md``):

- ``pca``: PCA of every snapshot. Dominated by the spread of the random starts (the
  transient), so distinct end points can project onto one.
- ``late_pca``: PCA of the late snapshots (from ``late_from`` of each run on), where runs
  settle: the directions that separate their ends. Early snapshots are projected with it.
- ``function``: ``late_pca`` of the states the caller gives, which are then the model's
  outputs on a fixed probe set (the same for permuted networks).
- ``dmd``: the amplitudes of the slowest modes of a linear (DMD) fit of the pairs.
- ``latent``: the encoder of an autoencoder trained with a latent map (MORALS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from doodl.analysis.settings import COORDINATE_KINDS

DMD_RANK = 12  # SVD rank of the DMD fit: enough for the slow modes, robust to noise


@dataclass(frozen=True)
class Coordinates:
    """A fitted map from states ``(n, D)`` to coordinates ``(n, dims)``."""

    kind: str
    transform: Callable[[np.ndarray], np.ndarray]
    explained_variance_ratio: np.ndarray  # (dims,): variance share per axis (NaN where it has no meaning)

    def __call__(self, states: np.ndarray) -> np.ndarray:
        return np.asarray(self.transform(np.asarray(states, dtype=np.float64)), dtype=np.float64)

    @property
    def axis_labels(self) -> list[str]:
        prefix = {"pca": "PC", "late_pca": "late PC", "function": "output PC", "dmd": "slow mode ",
                  "latent": "latent "}[self.kind]
        evr = self.explained_variance_ratio
        return [f"{prefix}{k + 1}" + (f" ({evr[k]:.0%})" if np.isfinite(evr[k]) else "") for k in range(len(evr))]


def pca(snapshots: np.ndarray, dims: int, kind: str = "pca") -> Coordinates:
    """PCA with ``dims`` components of an (n, D) array; signs fixed (the largest loading of
    each component positive) so the same data always give the same picture."""
    x = np.asarray(snapshots, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 snapshots as an (n, D) array, got shape {x.shape}")
    if dims > min(x.shape):
        raise ValueError(f"cannot project {x.shape[0]} snapshots of {x.shape[1]} values to {dims} dimensions")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:dims]
    comps = comps * np.sign(comps[np.arange(dims), np.abs(comps).argmax(axis=1)])[:, None]
    var = s**2
    ratio = var[:dims] / var.sum() if var.sum() > 0 else np.zeros(dims)
    return Coordinates(kind, lambda t: (t - mean) @ comps.T, ratio)


def late_snapshots(states: list[np.ndarray], late_from: float) -> np.ndarray:
    """The snapshots of each run from the fraction ``late_from`` of its length on (the
    last one at least)."""
    return np.concatenate([s[min(int(np.floor(late_from * (len(s) - 1))), len(s) - 1):] for s in states])


def dmd_coordinates(x: np.ndarray, y: np.ndarray, dims: int) -> Coordinates:
    """Amplitudes of the ``dims`` slowest DMD modes of the pairs ``y ~ A x + b``.

    Exact DMD on centred, rank-reduced states: the eigenvalues of largest modulus are the
    slowest modes; a complex pair gives two coordinates (real and imaginary part of one
    amplitude), a real eigenvalue one.
    """
    mean = x.mean(axis=0)
    xc, yc = x - mean, y - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    r = int(min(DMD_RANK, max(dims, int((s > s[0] * 1e-9).sum())), len(s)))
    u = vt[:r].T  # (D, r): the leading directions of the states
    a = np.linalg.lstsq(xc @ u, yc @ u, rcond=None)[0].T  # reduced operator: z' = a z
    eigvals, vecs = np.linalg.eig(a)
    left = np.linalg.inv(vecs)  # rows: left eigenvectors, amplitude_k = left[k] @ z
    order = np.argsort(-np.abs(eigvals), kind="stable")
    rows: list[tuple[int, str]] = []
    for k in order:
        if len(rows) >= dims:
            break
        if abs(eigvals[k].imag) < 1e-12:
            rows.append((k, "re"))
        elif eigvals[k].imag > 0:  # one of each conjugate pair
            rows.append((k, "re"))
            if len(rows) < dims:
                rows.append((k, "im"))
    proj = np.stack([left[k].real if part == "re" else left[k].imag for k, part in rows])  # (dims, r)
    basis = u @ proj.T  # (D, dims)

    return Coordinates("dmd", lambda t: (t - mean) @ basis, np.full(dims, np.nan))


def fit_coordinates(kind: str, states: list[np.ndarray], x: np.ndarray, y: np.ndarray, dims: int, *,
                    late_from: float = 0.5, seed: int = 0) -> Coordinates:
    """Fit coordinates of ``kind`` to the runs' states (a list of (T, D) arrays) and their
    snapshot pairs ``x -> y`` (rows of states)."""
    if kind == "pca":
        return pca(np.concatenate(states), dims)
    if kind in ("late_pca", "function"):
        late = late_snapshots(states, late_from)
        if len(late) <= dims:  # too few late snapshots to span the axes: use them all
            late = np.concatenate(states)
        return pca(late, dims, kind)
    if kind == "dmd":
        return dmd_coordinates(x, y, dims)
    if kind == "latent":
        from doodl.analysis._latent import LatentDynamics

        model = LatentDynamics(dims=dims, seed=seed).fit(x, y)
        return Coordinates("latent", model.encode, np.full(dims, np.nan))
    raise ValueError(f"unknown coordinates {kind!r}; one of {', '.join(COORDINATE_KINDS)}")
