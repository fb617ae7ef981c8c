"""A smooth surrogate of the training map ``x_t -> x_{t+tau}`` in projected coordinates.

Why a Gaussian process: the snapshots are few (tens to hundreds of pairs per group), the
map is smooth between them, and a GP's posterior mean interpolates them with a length
scale chosen by marginal likelihood instead of by hand (the DOODL3 authors use one too).
scikit-learn's ``GaussianProcessRegressor`` with an anisotropic RBF kernel plus white
noise is fitted once per group, in the task that uses it: nothing is cached across calls.

Far from the data. A GP reverts to its prior mean away from the data, so the prior mean
decides what boxes between and beyond the trajectories do. Ours is the least-squares
affine fit of the pairs, ``m(x) = c + (x - c) A``, with the singular values of ``A``
capped at ``far_field`` so it contracts toward the centre ``c`` of the data; the GP models
``x_{t+tau} - m(x_t)``. Measured on the known-answer suite (``BENCHMARKS.md``), this matters
where trajectories are sparse: a fixed contraction ``c + far_field (x - c)`` leaves large
residuals at the runs' end points (far from ``c``), and the GP, extrapolating them into
the gaps between runs, moved saddles and invented attractors there; the fitted affine
part carries what the data say globally (directions that contract, and how fast), so the
residuals stay small. The cap keeps the far field a contraction: it adds no invariant set
outside the data's hull, only the basin that leads into it.

Noise. Gradient descent gives exactly repeatable pairs, and runs pile up near-identical
pairs at their ends; with no noise floor the GP interpolates those piles exactly and rings
between them (seen: a displacement of 2.5 where the true map has 0). The white-noise level
is therefore at least ``NOISE_FLOOR`` of the standardised variance.

Uncertainty. :meth:`TrainingMapSurrogate.std_field` gives the GP's posterior standard
deviation (white noise included: the spread of SGD's steps) over a box, so box images can be
widened by it and the combinatorial map encloses what the data allow rather than only the
mean. The exact posterior variance costs ``n_pairs**2`` per point; it is computed on a
regular grid of about ``STD_GRID_POINTS`` nodes over the box; a point takes the largest value
of the grid cell around it.
"""

from __future__ import annotations

import warnings

import numpy as np

PREDICT_CHUNK = 8192  # points per kernel block: bounds memory at chunk x n_pairs doubles
HYPER_PAIRS = 200  # pairs the kernel's hyperparameters are tuned on
# extra random starts of the marginal-likelihood search (seeded): from one start it sometimes
# settled on "everything is noise" (amplitude 0.01, the map = the far field), and a fold of a
# 64-run double well lost a well
HYPER_RESTARTS = 2
NOISE_FLOOR = 1e-5  # least white-noise variance (standardised units); see the module docstring
# shortest length scale (standardised units): below a grid box at the default depth, so it
# never limits what the grid can resolve; shorter ones fit SGD's jitter between neighbouring
# snapshots (seen in function space: 0.01, and attractors covering 40% of the box)
LENGTH_FLOOR = 0.1
STD_GRID_POINTS = 4096  # nodes of the grid the posterior standard deviation is computed on


def balanced_subset(x: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of ``size`` rows of ``x`` spread evenly over space.

    Runs spend most of their snapshots settled at their end, so a random subset is mostly
    near-duplicate pairs there and few in the transient, where the map has the most to say;
    the GP's length scales then fit the piles and it reverts to its prior between
    trajectories. Here rows are binned on a grid and taken round-robin over the occupied
    bins (random order within a bin), so the transient keeps its pairs."""
    rng = np.random.default_rng(seed)
    lo, hi = x.min(axis=0), x.max(axis=0)
    per_axis = max(2, int(round(size ** (1 / x.shape[1]))))
    cell = np.minimum(((x - lo) / np.maximum(hi - lo, 1e-12) * per_axis).astype(np.int64), per_axis - 1)
    flat = np.ravel_multi_index(tuple(cell.T), (per_axis,) * x.shape[1])
    order = rng.permutation(len(x))
    flat = flat[order]
    # rank of each row within its bin (in the random order), then take by rank
    sort = np.argsort(flat, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(flat[sort])) + 1]
    rank = np.empty(len(x), dtype=np.int64)
    rank[sort] = np.arange(len(x)) - np.repeat(starts, np.diff(np.r_[starts, len(x)]))
    chosen = order[np.lexsort((rng.random(len(x)), rank))[:size]]
    return np.sort(chosen)


def _capped_affine_gain(x: np.ndarray, y: np.ndarray, cap: float) -> np.ndarray:
    """The least-squares ``A`` of ``y ~ x A`` (rows centred), its singular values capped at
    ``cap`` so ``x -> x A`` contracts by at least that factor."""
    a = np.linalg.lstsq(x, y, rcond=None)[0]
    u, sv, vt = np.linalg.svd(a)
    return (u * np.minimum(sv, cap)) @ vt


class TrainingMapSurrogate:
    """Fit with :meth:`fit` on snapshot pairs; call on an (n, d) array of points."""

    def __init__(self, far_field: float = 0.9, max_pairs: int = 600, seed: int = 0):
        if not 0.0 <= far_field < 1.0:
            raise ValueError(f"far_field must be in [0, 1), got {far_field}")
        self.far_field = far_field
        self.max_pairs = max_pairs
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> TrainingMapSurrogate:
        """Fit to pairs ``y[i] = map(x[i])`` (both (n, d)); beyond ``max_pairs`` pairs are
        thinned evenly over space (see :func:`balanced_subset`)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 2 or len(x) < 3:
            raise ValueError(f"need at least 3 pairs as two (n, d) arrays, got {x.shape} and {y.shape}")
        if len(x) > self.max_pairs:
            keep = balanced_subset(x, self.max_pairs, self.seed)
            x, y = x[keep], y[keep]
        self.centre_ = np.concatenate([x, y]).mean(axis=0)
        # scale each axis to unit spread so one kernel fits axes of very different extent
        self.scale_ = np.maximum(np.concatenate([x, y]).std(axis=0), 1e-12)
        xs = (x - self.centre_) / self.scale_
        self.gain_ = _capped_affine_gain(x - self.centre_, y - self.centre_, self.far_field)
        target = (y - self._prior(x)) / self.scale_
        d = x.shape[1]
        kernel = (ConstantKernel(1.0, (1e-4, 1e4)) * RBF(np.ones(d), (LENGTH_FLOOR, 1e2))
                  + WhiteKernel(1e-4, (NOISE_FLOOR, 1e-1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a bound reached is still a usable fit
            # hyperparameters by marginal likelihood on a subsample (its cost grows as n^3 per
            # step of the optimiser), then the posterior on every pair with them fixed
            sub = balanced_subset(x, min(len(x), HYPER_PAIRS), self.seed + 1)
            tuned = GaussianProcessRegressor(kernel=kernel, normalize_y=False, n_restarts_optimizer=HYPER_RESTARTS,
                                             random_state=self.seed).fit(xs[sub], target[sub])
            self.gp_ = GaussianProcessRegressor(kernel=tuned.kernel_, optimizer=None, normalize_y=False)
            self.gp_.fit(xs, target)
        self.n_pairs_ = len(x)
        return self

    def _prior(self, x: np.ndarray) -> np.ndarray:
        return self.centre_ + (x - self.centre_) @ self.gain_

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        out = np.empty_like(points)
        # the posterior mean is k(x, X) @ alpha; computed here rather than through
        # GaussianProcessRegressor.predict, whose input checks dominate CMGDB's many small calls
        const, length = self.gp_.kernel_.k1.k1.constant_value, self.gp_.kernel_.k1.k2.length_scale
        train = self.gp_.X_train_ / length
        train_sq = (train**2).sum(1)[None, :]
        alpha = const * self.gp_.alpha_.reshape(len(train), -1)
        for a in range(0, len(points), PREDICT_CHUNK):
            p = points[a : a + PREDICT_CHUNK]
            q = (p - self.centre_) / self.scale_ / length
            sq = (q**2).sum(1)[:, None] + train_sq - 2 * q @ train.T
            resid = np.exp(-0.5 * np.maximum(sq, 0.0)) @ alpha
            out[a : a + PREDICT_CHUNK] = self._prior(p) + resid.reshape(p.shape) * self.scale_
        return out

    def std(self, points: np.ndarray) -> np.ndarray:
        """Posterior standard deviation of the map at each point, per axis ((n, d))."""
        points = np.asarray(points, dtype=np.float64)
        _, sd = self.gp_.predict((points - self.centre_) / self.scale_, return_std=True)
        sd = np.asarray(sd).reshape(len(points), -1)[:, :1]  # one kernel: the same for every output
        return sd * self.scale_

    def std_field(self, lower: np.ndarray, upper: np.ndarray):
        """A callable giving the posterior standard deviation ((n, d)) anywhere in the box
        ``[lower, upper]``: computed on a regular grid of nodes, and at a point the largest
        value of the ``2**d`` nodes around it (an enclosure errs on the wide side)."""
        lower, upper = np.asarray(lower, float), np.asarray(upper, float)
        d = len(lower)
        per_axis = max(2, int(round(STD_GRID_POINTS ** (1 / d))))
        axes = [np.linspace(lower[k], upper[k], per_axis) for k in range(d)]
        nodes = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
        grid = (self.std(nodes)[:, 0] / self.scale_[0]).reshape([per_axis] * d)  # standardised, per node
        # the max over each cell's corners, once: a lookup per point is then one index
        cell_max = grid
        for k in range(d):
            cell_max = np.maximum(np.take(cell_max, range(per_axis - 1), axis=k),
                                  np.take(cell_max, range(1, per_axis), axis=k))
        step = (upper - lower) / (per_axis - 1)
        scale = self.scale_

        def field(points: np.ndarray) -> np.ndarray:
            idx = np.clip(((np.asarray(points, float) - lower) / step).astype(np.int64), 0, per_axis - 2)
            return cell_max[tuple(idx.T)][:, None] * scale

        return field

    @property
    def kernel(self) -> str:
        return str(self.gp_.kernel_)
