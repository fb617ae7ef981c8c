"""A smooth surrogate of the training map ``x_t -> x_{t+tau}`` in projected coordinates.

Why a Gaussian process: the snapshots are few (tens to hundreds of pairs per group), the
map is smooth between them, and a GP's posterior mean interpolates them with a length
scale chosen by marginal likelihood instead of by hand (the DOODL3 authors use one too).
scikit-learn's ``GaussianProcessRegressor`` with an anisotropic RBF kernel plus white
noise is fitted once per group, in the task that uses it: nothing is cached across calls.

Far from the data. A GP reverts to its prior mean away from the data, so the prior mean
decides what boxes far from any snapshot do. Ours is a contraction toward the centre of
the data, ``m(x) = c + far_field * (x - c)``, and the GP models ``x_{t+tau} - m(x_t)``:
near the snapshots the map is the fitted one; a few length scales away it pulls points
back toward the data at the rate ``far_field`` (0 sends them straight to the centre, as a
zero-mean GP on positions does; values near 1 make the far field almost the identity,
which creates spurious recurrent boxes). So the far field adds no invariant set of its own
outside the data's hull, only the basin that leads into it.
"""

from __future__ import annotations

import warnings

import numpy as np

PREDICT_CHUNK = 8192  # points per kernel block: bounds memory at chunk x n_pairs doubles


class TrainingMapSurrogate:
    """Fit with :meth:`fit` on snapshot pairs; call on an (n, d) array of points."""

    def __init__(self, far_field: float = 0.5, max_pairs: int = 600, seed: int = 0):
        if not 0.0 <= far_field < 1.0:
            raise ValueError(f"far_field must be in [0, 1), got {far_field}")
        self.far_field = far_field
        self.max_pairs = max_pairs
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> TrainingMapSurrogate:
        """Fit to pairs ``y[i] = map(x[i])`` (both (n, d)); pairs beyond ``max_pairs`` are
        thinned at random with a fixed seed."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 2 or len(x) < 3:
            raise ValueError(f"need at least 3 pairs as two (n, d) arrays, got {x.shape} and {y.shape}")
        if len(x) > self.max_pairs:
            keep = np.random.default_rng(self.seed).choice(len(x), self.max_pairs, replace=False)
            x, y = x[np.sort(keep)], y[np.sort(keep)]
        self.centre_ = np.concatenate([x, y]).mean(axis=0)
        # scale each axis to unit spread so one kernel fits axes of very different extent
        self.scale_ = np.maximum(np.concatenate([x, y]).std(axis=0), 1e-12)
        xs = (x - self.centre_) / self.scale_
        target = (y - self._prior(x)) / self.scale_
        d = x.shape[1]
        kernel = (ConstantKernel(1.0, (1e-4, 1e4)) * RBF(np.ones(d), (1e-2, 1e2))
                  + WhiteKernel(1e-4, (1e-10, 1e-1)))
        self.gp_ = GaussianProcessRegressor(kernel=kernel, normalize_y=False, n_restarts_optimizer=0,
                                            random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a bound reached is still a usable fit
            self.gp_.fit(xs, target)
        self.n_pairs_ = len(x)
        return self

    def _prior(self, x: np.ndarray) -> np.ndarray:
        return self.centre_ + self.far_field * (x - self.centre_)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        out = np.empty_like(points)
        for a in range(0, len(points), PREDICT_CHUNK):
            p = points[a : a + PREDICT_CHUNK]
            resid = self.gp_.predict((p - self.centre_) / self.scale_).reshape(p.shape)
            out[a : a + PREDICT_CHUNK] = self._prior(p) + resid * self.scale_
        return out

    @property
    def kernel(self) -> str:
        return str(self.gp_.kernel_)
