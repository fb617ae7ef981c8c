"""The training map as the snapshot pairs know it: a box map for CMGDB with no fitted model.

A group's runs give pairs ``x -> y`` of projected states ``span`` snapshots apart. The
combinatorial map on boxes (``docs/methods.md``, "The map") sends a box to the bounding box
of

- the images ``y`` of the pairs whose ``x`` lies in the box (what training did there), and
- for each corner of the box, the images of the nearest pair of each of the ``RUNS`` runs
  nearest that corner (what training did closest to it).

Why no smooth surrogate. A Gaussian process fitted to the pairs (the DOODL3 authors' choice,
doodl's until issue 21) is a mean: where runs of different outcomes pass through one region
it averages their futures, and its prior and noise term move states that training holds
still. Measured on real training with known local minima (``BENCHMARKS.md``, "Morse graphs
that see real outcomes"), it carried stuck end states several boxes a step and left one
attractor for two to ten outcomes. The pair map is exact where the data are (a box holding
settled runs' ends maps into itself, so those ends are an attractor), multivalued where
they disagree (a box near runs of two outcomes maps toward both, so it lies in neither
basin: undecided, never a wrong basin), and far from the data it maps a box onto the data
nearest it, adding no invariant set where no run went. Every image is some pair's ``y``,
inside the domain, so no Conley index is left undefined by images leaving it.

Why two runs per corner. One run is an anecdote: with the nearest pair alone every seed's
own end was an attractor (10 attractors for the 16 seeds of one outcome on
``examples/morse.yaml``, whose seeds memorise different noisy labels and end apart). With
the nearest two runs, an end maps toward its neighbour's end, so a cloud of ends is one
recurrent set, and an attractor needs two runs' support, which a fold without one of them
still has. Nearest is measured after scaling each axis by the domain's extent (the grid's
own metric).
"""

from __future__ import annotations

import numpy as np

RUNS = 2  # runs whose nearest pair each corner of a box maps with
_CANDIDATES = 8  # nearest pairs searched per corner for each of those runs


class PairMap:
    """The box map of snapshot pairs ``y[i] = map(x[i])`` (both ``(n, d)``, pair ``i`` from
    run ``runs[i]``) on the domain ``[lower, upper]``: :meth:`box_images` on ``(m, 2d)``
    rectangles (``d`` lower then ``d`` upper bounds); the map itself on ``(m, d)`` points
    gives each point's nearest pair's image."""

    def __init__(self, x: np.ndarray, y: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                 runs: np.ndarray | None = None):
        from scipy.spatial import cKDTree

        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 2 or len(x) == 0:
            raise ValueError(f"need pairs as two (n, d) arrays with n >= 1, got {x.shape} and {y.shape}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("snapshot pairs contain NaN or infinite values")
        self.x, self.y = x, y
        self.runs = np.zeros(len(x), dtype=np.int64) if runs is None else np.asarray(runs)
        if self.runs.shape != (len(x),):
            raise ValueError(f"runs must give one run per pair, got shape {self.runs.shape} for {len(x)} pairs")
        self.lower = np.asarray(lower, dtype=np.float64)
        self.scale = 1.0 / (np.asarray(upper, dtype=np.float64) - self.lower)
        self._tree = cKDTree(self._unit(x))

    @property
    def n_pairs(self) -> int:
        return len(self.x)

    def _unit(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.lower) * self.scale

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The image of each point's nearest pair."""
        _, idx = self._tree.query(self._unit(points))
        return self.y[idx]

    def _nearest_runs(self, points: np.ndarray) -> np.ndarray:
        """``(n, RUNS)`` pair indices: for each point, the nearest pair of each of the
        ``RUNS`` runs nearest it (the nearest pair again where fewer runs are near)."""
        k = min(len(self.x), _CANDIDATES * RUNS)
        _, idx = self._tree.query(self._unit(points), k=k)
        idx = np.asarray(idx).reshape(len(points), k)
        run = self.runs[idx]
        picked = [idx[:, 0]]
        new = np.ones(idx.shape, dtype=bool)
        for _ in range(RUNS - 1):  # candidates come sorted by distance: take the first unseen run
            new &= run != self.runs[picked[-1]][:, None]
            first = new.argmax(axis=1)
            picked.append(np.where(new.any(axis=1), idx[np.arange(len(idx)), first], idx[:, 0]))
        return np.stack(picked, axis=1)

    def box_images(self, rects: np.ndarray) -> np.ndarray:
        """Bounding boxes of the images of the pairs inside each rectangle and of the pairs
        nearest its corners (see the module docstring); ``(m, 2d)`` like ``rects``."""
        rects = np.asarray(rects, dtype=np.float64)
        m, d = len(rects), rects.shape[1] // 2
        lo, hi = rects[:, :d], rects[:, d:]
        bits = ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)  # which corner
        corners = np.where(bits[None], hi[:, None, :], lo[:, None, :]).reshape(-1, d)
        near = self.y[self._nearest_runs(corners)].reshape(m, -1, d)
        out = np.hstack([near.min(axis=1), near.max(axis=1)])
        # pairs inside: candidates from the tree (a cube around the centre), then exact bounds
        centre = self._unit((lo + hi) / 2)
        radius = ((hi - lo) / 2 * self.scale).max(axis=1) * (1 + 1e-9)
        for k, ids in enumerate(self._tree.query_ball_point(centre, radius, p=np.inf)):
            if not ids:
                continue
            ids = np.asarray(ids)
            ids = ids[((self.x[ids] >= lo[k]) & (self.x[ids] <= hi[k])).all(axis=1)]
            if len(ids):
                out[k, :d] = np.minimum(out[k, :d], self.y[ids].min(axis=0))
                out[k, d:] = np.maximum(out[k, d:], self.y[ids].max(axis=0))
        return out
