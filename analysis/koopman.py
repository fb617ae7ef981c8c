"""Koopman spectra of training dynamics and the distance between them (Redman et al.,
"Identifying Equivalent Training Dynamics").

Two training processes are conjugate (the same dynamics in different coordinates) when
their Koopman operators have the same spectrum. Here the spectrum is estimated by exact
DMD: the observables are the recorded (possibly projected) parameters with time delays,
the snapshot pairs ``(z_t, z_{t+1})`` of several trajectories are stacked into two
matrices ``X`` and ``Y``, and the eigenvalues of ``U_r^* Y V_r S_r^{-1}`` (the rank-``r``
SVD of ``X``) approximate the Koopman eigenvalues. Spectra are compared by the
1-Wasserstein distance between the eigenvalue sets in the complex plane (an optimal
assignment), and judged against the spread between seeds of one configuration
(:func:`conjugacy`), never against a fixed cut-off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist, squareform

METHOD_VERSION = 1  # bump when a change alters results: stored results of older versions are redone
# How the rank-r SVD of the snapshot matrix X (rows: observables x delays, columns: pairs)
# is taken. Training's X is tall and thin (thousands of parameters, tens of pairs): there
# the eigen-decomposition of X^T X (the method of snapshots) costs one product, 5-30x less
# than an SVD, and squares only the discarded directions' precision. Otherwise, above
# RANDOMIZED_ABOVE entries, a randomized rank-r SVD (Halko et al.); else the full SVD.
GRAM_MAX_COLUMNS = 512  # and at least 4 rows per column
RANDOMIZED_ABOVE = 2_000_000


def delay_embed(trajectory: np.ndarray, delays: int) -> np.ndarray:
    """``(T, D)`` -> ``(T - delays, (delays + 1) D)``: row ``t`` is ``x_t, x_{t+1}, ...,
    x_{t+delays}`` side by side."""
    x = np.asarray(trajectory, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"a trajectory must be (T, D), got shape {x.shape}")
    if delays < 0:
        raise ValueError(f"delays must be at least 0, got {delays}")
    n = len(x) - delays
    if n < 1:
        return np.empty((0, x.shape[1] * (delays + 1)))
    return np.hstack([x[k:k + n] for k in range(delays + 1)])


def snapshot_pairs(trajectories: Sequence[np.ndarray], delays: int) -> tuple[np.ndarray, np.ndarray]:
    """Stacked delay-embedded snapshot pairs of every trajectory: ``X`` and ``Y``, one
    column per pair (``Y[:, k]`` is one step after ``X[:, k]``), never crossing from one
    trajectory into the next."""
    xs, ys = [], []
    for traj in trajectories:
        z = delay_embed(traj, delays)
        if len(z) >= 2:
            xs.append(z[:-1])
            ys.append(z[1:])
    if not xs:
        raise ValueError(f"no snapshot pairs: every trajectory is shorter than delays + 2 = {delays + 2}")
    return np.vstack(xs).T, np.vstack(ys).T


def _truncated_svd(x: np.ndarray, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The leading ``rank`` singular triplets of ``x`` and the relative size below which a
    singular value is round-off for the method used."""
    rows, cols = x.shape
    eps = np.finfo(np.float64).eps
    if rows >= 4 * cols and cols <= GRAM_MAX_COLUMNS:
        w, v = scipy.linalg.eigh(x.T @ x)
        order = np.argsort(w)[::-1][:rank]
        s = np.sqrt(np.clip(w[order], 0.0, None))
        v = v[:, order]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (x @ v) / s
        # eigenvalues of X^T X carry round-off of eps * s_max^2: singular values of sqrt of that
        return u, s, v.T, float(np.sqrt(max(rows, cols) * eps))
    if x.size > RANDOMIZED_ABOVE and rank < min(x.shape) // 2:
        from sklearn.utils.extmath import randomized_svd

        u, s, vh = randomized_svd(x, n_components=rank, n_oversamples=20, n_iter=7, random_state=seed)
    else:
        u, s, vh = scipy.linalg.svd(x, full_matrices=False)
    return u[:, :rank], s[:rank], vh[:rank], float(max(x.shape) * eps)


def koopman_eigenvalues(trajectories: Sequence[np.ndarray], delays: int = 4, rank: int | None = 8,
                        seed: int = 0) -> np.ndarray:
    """Koopman eigenvalues of the dynamics behind ``trajectories`` (a list of ``(T, D)``
    arrays of one system) by exact DMD on their time-delay embeddings.

    ``rank``: at most this many eigenvalues (``None``: as many as the data's numerical
    rank); singular values below the numerical-rank tolerance are dropped too, so a
    system of lower rank gives fewer. Returns complex eigenvalues sorted by modulus,
    largest first. Tall snapshot matrices use the method of snapshots, large ones a
    randomized rank-``rank`` SVD (``seed``).
    """
    x, y = snapshot_pairs(trajectories, delays)
    limit = min(x.shape) if rank is None else min(int(rank), *x.shape)
    if limit < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    u, s, vh, tolerance = _truncated_svd(x, limit, seed)
    # numerical rank, as numpy.linalg.matrix_rank: noise-level directions would give
    # eigenvalues of round-off
    keep = s > s[0] * tolerance if len(s) and s[0] > 0 else np.zeros(len(s), bool)
    if not keep.any():
        raise ValueError("the snapshots do not move: no dynamics to decompose")
    u, s, vh = u[:, keep], s[keep], vh[keep]
    a_tilde = (u.conj().T @ y @ vh.conj().T) / s
    eigs = scipy.linalg.eigvals(a_tilde)
    return eigs[np.lexsort((-eigs.imag, -np.abs(eigs)))]


def spectral_distance(eigs_a: np.ndarray, eigs_b: np.ndarray) -> float:
    """1-Wasserstein distance between two eigenvalue sets as uniform measures on the
    complex plane: the mean distance of the optimal assignment. Sets of different sizes
    are compared exactly by repeating each eigenvalue to the sizes' least common multiple."""
    a, b = np.asarray(eigs_a, dtype=complex).ravel(), np.asarray(eigs_b, dtype=complex).ravel()
    if not len(a) or not len(b):
        raise ValueError("both eigenvalue sets must be non-empty")
    m = math.lcm(len(a), len(b))
    pa = np.repeat(np.column_stack([a.real, a.imag]), m // len(a), axis=0)
    pb = np.repeat(np.column_stack([b.real, b.imag]), m // len(b), axis=0)
    cost = cdist(pa, pb)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


@dataclass(frozen=True)
class Conjugacy:
    """Which groups train alike, from per-seed spectra.

    ``distance[g, h]`` (g != h): the mean distance between a seed of ``g`` and a seed of
    ``h``; ``distance[g, g]``: the spread, the mean distance between two seeds of ``g``
    (NaN with fewer than two seeds). ``ratio[g, h]`` = ``distance[g, h] / max(spread_g,
    spread_h)``; ``conjugate[g, h]`` when that ratio is at most 1. ``classes``: average
    linkage on the ratio cut at 1, numbered 0, 1, ... in order of each class's first group.
    """

    distance: np.ndarray
    ratio: np.ndarray
    conjugate: np.ndarray
    classes: np.ndarray


def conjugacy(per_seed: Sequence[Sequence[np.ndarray]]) -> Conjugacy:
    """The rule doodl calls groups conjugate by. ``per_seed[g]`` holds the spectra of group
    ``g``'s seeds (each from that seed's trajectory alone). Two groups are conjugate when
    their seeds are, on average, no further apart across the groups than within the more
    spread of the two: comparing seed-level spectra with seed-level spectra, so the
    estimate's noise is on both sides of the comparison. A group without a spread (fewer
    than two seeds with a spectrum) takes the other's; two such groups are never called
    conjugate."""
    n = len(per_seed)
    dist = np.full((n, n), np.nan)
    for g in range(n):
        for h in range(g, n):
            pairs = [spectral_distance(a, b) for i, a in enumerate(per_seed[g]) for j, b in enumerate(per_seed[h])
                     if g != h or i < j]
            if pairs:
                dist[g, h] = dist[h, g] = float(np.mean(pairs))
    spread = np.diag(dist).copy()
    with np.errstate(invalid="ignore"):
        scale = np.fmax(spread[:, None], spread[None, :])
        ratio = dist / scale
    np.fill_diagonal(ratio, 0.0)
    judged = np.where(np.isfinite(ratio), ratio, np.inf)
    conj = judged <= 1.0
    if n == 1:
        classes = np.zeros(1, dtype=np.int64)
    else:
        # inf cannot enter linkage: a large finite stand-in keeps such pairs apart
        finite = np.where(np.isfinite(judged), judged, 1e6)
        labels = fcluster(linkage(squareform(finite, checks=False), method="average"), t=1.0, criterion="distance")
        order = {}
        classes = np.array([order.setdefault(lab, len(order)) for lab in labels], dtype=np.int64)
    return Conjugacy(dist, ratio, conj, classes)
