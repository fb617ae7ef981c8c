"""Global connectivity between seeds: mode connectivity along curves, CKA, distances.

Mode connectivity follows Yang et al. (docs/methods.md, "Connectivity taxonomy"): a quadratic Bezier curve
``g(t) = (1-t)^2 a + 2t(1-t) c + t^2 b`` between two seeds' weights ``a`` and ``b``; ``c``
starts at the midpoint (the straight line) and is trained by SGD with momentum on the loss
at ``g(t)``, ``t ~ U(0, 1)`` per step. Several pairs train at once: their ``a, b, c`` are
stacked and the step is ``vmap`` over pairs; each pair has its own data (the points both
seeds trained on with the same label).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

T_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def mc_from_errors(errors: np.ndarray) -> float:
    """``mc = (e0 + e1)/2 - e(t*)`` with ``t*`` maximising ``|e(t) - (e0 + e1)/2|`` over the
    interior of the curve.

    ``errors`` are the error rates (in %) at ``T_GRID`` (any grid whose first and last points
    are the two seeds). Negative mc is a barrier (the curve is worse than its ends), positive a
    curve better than its ends. ``t*`` excludes the ends: there ``|e - mid| = |e1 - e0|/2``
    with opposite signs, so an end would win on any curve flatter than its ends and the sign
    would follow the order of the pair. Interior points tied for the largest deviation
    (within 1e-9) are averaged, so the answer depends only on the set of errors, not on
    which seed comes first; on a grid symmetric about 0.5 (``T_GRID``) a straight line
    between different ends gives 0.
    """
    e = np.asarray(errors, dtype=float)
    if e.ndim != 1 or len(e) < 3:
        raise ValueError(f"mc needs a 1-d curve of at least 3 errors (ends and interior), got shape {e.shape}")
    dev = e[1:-1] - (e[0] + e[-1]) / 2
    size = np.abs(dev)
    tied = dev[size >= size.max() - 1e-9]
    return float(0.0 - tied.mean())  # 0.0 - x, not -x: no -0.0 in reports


def linear_barrier(errors: np.ndarray) -> float:
    """Largest excess of ``e(t)`` over the straight interpolation of its ends (>= 0)."""
    e = np.asarray(errors, dtype=float)
    t = np.asarray(T_GRID)
    return float(max(0.0, np.max(e - ((1 - t) * e[0] + t * e[-1]))))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (biased HSIC) between two (n, k) feature matrices of the same n points."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else float("nan")


class CurveFitter:
    """Trains the middle points of Bezier curves for K pairs of one model shape at once."""

    def __init__(self, model: torch.nn.Module, shapes: dict[str, torch.Size]):
        self.model = model
        self.shapes = shapes
        self.sizes = [int(np.prod(s)) for s in shapes.values()]

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, self.sizes, dim=-1)
        return {k: p.reshape(*flat.shape[:-1], *s) for (k, s), p in zip(self.shapes.items(), parts)}

    def _point(self, a, b, c, t):
        return (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b

    def fit(self, a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, n: torch.Tensor, *,
            steps: int, lr: float, momentum: float, batch: int, seed: int) -> torch.Tensor:
        """Middle points (K, P) after ``steps`` SGD steps; pair k trains on its own data
        ``x[k, :n[k]], y[k, :n[k]]`` (padded to one length: (K, N, F) and (K, N))."""
        c = (a + b) / 2
        buf = torch.zeros_like(c)
        gen = torch.Generator().manual_seed(seed)

        def loss(c1, a1, b1, t, xb, yb):
            p = self.unflatten(self._point(a1, b1, c1, t))
            return F.cross_entropy(functional_call(self.model, p, (xb,)), yb)

        step_grad = vmap(grad(loss))
        k = a.shape[0]
        rows = torch.arange(k)[:, None]
        for _ in range(steps):
            t = torch.rand(k, generator=gen, dtype=a.dtype)
            idx = (torch.rand(k, batch, generator=gen, dtype=torch.float64) * n[:, None]).long()
            g = step_grad(c, a, b, t, x[rows, idx], y[rows, idx])
            buf.mul_(momentum).add_(g)
            c = c - lr * buf
        return c

    def errors(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
               n: torch.Tensor, ts=T_GRID) -> np.ndarray:
        """Error rates in % of each pair's curve at each ``t`` on its own data: (K, len(ts))."""
        mask = (torch.arange(x.shape[1])[None, :] < n[:, None]).double()

        def err(a1, b1, c1, t, x1, y1, m1):
            p = self.unflatten(self._point(a1, b1, c1, t))
            wrong = (functional_call(self.model, p, (x1,)).argmax(-1) != y1).double()
            return (wrong * m1).sum() / m1.sum() * 100

        out = torch.stack([vmap(err, in_dims=(0, 0, 0, None, 0, 0, 0))(a, b, c, torch.tensor(t, dtype=a.dtype),
                                                                       x, y, mask) for t in ts], dim=1)
        return out.numpy()
