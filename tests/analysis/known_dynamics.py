"""Training dynamics whose answer the maths gives: gradient descent (plain, noisy, with
momentum) on potentials with known minima and saddles, embedded in many dimensions.

Every potential is ``W(x0, x1) + |x_rest|^2 / 2``: a landscape ``W`` in the first two
coordinates inside a bowl in the other ``dim - 2``. Run ``k`` starts uniformly within 0.9
of minimum ``k mod K`` in ``(x0, x1)`` (so every well is visited by ``n / K`` runs or more)
and uniformly in ``[-1.5, 1.5]`` in the other coordinates; the well a run really ends in
is known from its own end point, so a Morse graph can be checked run by run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from doodl.analysis.dynamics import RunTrajectory

_S = 0.45  # width of a soft-min well
MARGIN = 0.15  # stratified starts keep this far from a separatrix: about one grid box at the default depth


def _softmin_grad(p: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Gradient of W = -s^2 log sum_j exp(-|p - m_j|^2 / 2 s^2): a soft minimum of
    quadratics, one well per centre, saddles between neighbours."""
    diff = p[:, None, :] - centres[None]
    logits = -(diff**2).sum(-1) / (2 * _S**2)
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    return p - (w[:, :, None] * centres[None]).sum(1)


@dataclass(frozen=True)
class Landscape:
    """A potential's landscape part: its gradient and its minima (in (x0, x1))."""

    name: str
    minima: np.ndarray  # (k, 2)

    def grad(self, p: np.ndarray) -> np.ndarray:
        x, y = p[:, 0], p[:, 1]
        if self.name == "bowl":
            return p.copy()
        if self.name == "double_well":  # (x^2 - 1)^2 / 4 + y^2 / 2: minima (+-1, 0), saddle (0, 0)
            return np.stack([x**3 - x, y], 1)
        return _softmin_grad(p, self.minima)

    def well_of(self, p: np.ndarray) -> np.ndarray:
        """Index of the nearest minimum of each (x0, x1) point."""
        return np.argmin(((p[:, None, :] - self.minima[None]) ** 2).sum(-1), axis=1)

    def separatrix_distance(self, p: np.ndarray) -> np.ndarray:
        """Distance of each (x0, x1) point to the boundary of its well's basin. The wells of
        every landscape here are alike, so the boundaries are those of the minima's Voronoi
        cells (the double well's is x0 = 0); infinite with one minimum."""
        m = self.minima
        d2 = ((p[:, None, :] - m[None]) ** 2).sum(-1)
        own = d2.argmin(axis=1)
        gaps = np.full(d2.shape, np.inf)
        for j in range(len(m)):
            apart = np.linalg.norm(m[own] - m[j], axis=1)
            other = own != j
            gaps[other, j] = (d2[other, j] - d2[other, own[other]]) / (2 * apart[other])
        return gaps.min(axis=1)


LANDSCAPES = {
    "bowl": Landscape("bowl", np.zeros((1, 2))),
    "double_well": Landscape("double_well", np.array([[-1.0, 0.0], [1.0, 0.0]])),
    "three_wells_line": Landscape("three_wells_line", np.array([[-1.6, 0.0], [0.0, 0.0], [1.6, 0.0]])),
    "two_wells_plane": Landscape("two_wells_plane", np.array([[-1.0, -1.0], [1.0, 1.0]])),
    "three_wells_plane": Landscape("three_wells_plane",
                                   1.4 * np.array([[1.0, 0.0], [-0.5, 0.866], [-0.5, -0.866]])),
}


def descend(landscape: str, n_runs: int, *, dim: int = 40, lr: float = 0.02, steps: int = 300, every: int = 10,
            noise: float = 0.0, momentum: float = 0.0, seed: int = 0, stratified: bool = True,
            margin: float = MARGIN) -> tuple[list[RunTrajectory], np.ndarray]:
    """Runs of (stochastic, heavy-ball) gradient descent; returns the runs and the well
    (index into the landscape's minima) each really ended in.

    Stratified starts keep ``margin`` from the boundary of the basin they start in: a state
    closer to a separatrix than a grid box is undecidable at the grid's resolution, so the
    known answer there is "no basin" (tested on its own) rather than a well.
    ``stratified=False`` starts every coordinate uniformly in ``[-1.5, 1.5]`` (issue 10's
    failing case for PCA of all snapshots), separatrix or not. ``noise`` is the standard deviation of Gaussian gradient noise per coordinate (SGD);
    with ``momentum`` the step is ``v = momentum v - lr g; x += v``.
    """
    land = LANDSCAPES[landscape]
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, size=(n_runs, dim))
    if stratified:
        x[:, :2] = land.minima[np.arange(n_runs) % len(land.minima)] + rng.uniform(-0.9, 0.9, size=(n_runs, 2))
        near = land.separatrix_distance(x[:, :2]) < margin
        while near.any():  # redraw starts too close to a separatrix
            x[near, :2] = land.minima[np.flatnonzero(near) % len(land.minima)] + rng.uniform(-0.9, 0.9, (near.sum(), 2))
            near = land.separatrix_distance(x[:, :2]) < margin
    v = np.zeros_like(x)
    snaps, recorded = [], []
    for t in range(steps + 1):
        if t % every == 0 or t == steps:
            snaps.append(x.copy())
            recorded.append(t)
        if t == steps:
            break
        g = np.concatenate([land.grad(x[:, :2]), x[:, 2:]], axis=1)
        if noise:
            g = g + noise * rng.normal(size=g.shape)
        v = momentum * v - lr * g
        x = x + v
    traj = np.stack(snaps, axis=1)  # (runs, T, dim)
    memory = 1.0 / (1.0 - momentum) if momentum else 0.0
    runs = [RunTrajectory(f"run{k:03d}", np.asarray(recorded), traj[k], memory=memory) for k in range(n_runs)]
    return runs, land.well_of(traj[:, -1, :2])
