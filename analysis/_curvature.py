"""Hessian spectrum estimates for several models at once (PyHessian's methods, batched).

The models are the seeds of one group: their parameters are stacked along a leading
axis and every Hessian-vector product is ``vmap`` over that axis of a double-backward
``jvp(grad(loss))``, so one call serves all seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import grad, jvp, vmap

Params = dict[str, torch.Tensor]


def batched_hvp(loss: Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor]):
    """``hvp(params, v, x, y)`` for stacked params/v (leading axis S) and per-seed data."""

    def one(p, v, x, y):
        return jvp(lambda q: grad(loss)(q, x, y), (p,), (v,))[1]

    return vmap(one)


def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum((a[k] * b[k]).flatten(1).sum(1) for k in a)


def top_eigenvalue(
    hvp, params: Params, x: torch.Tensor, y: torch.Tensor, *, tol: float = 1e-3, max_iter: int = 100,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest-magnitude Hessian eigenvalue per seed by power iteration.

    Gaussian start (seeded); a seed stops when its estimate changes by less than ``tol``
    relative to the previous one. Returns ``(eigenvalues, iterations)``, both of shape (S,).
    """
    gen = torch.Generator().manual_seed(seed)
    v = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
    norm = _dot(v, v).sqrt()
    v = {k: t / norm.view(-1, *[1] * (t.dim() - 1)) for k, t in v.items()}
    n_seeds = norm.shape[0]
    eig = torch.zeros(n_seeds, dtype=torch.float64)
    iters = torch.zeros(n_seeds, dtype=torch.int64)
    done = torch.zeros(n_seeds, dtype=torch.bool)
    for i in range(max_iter):
        hv = hvp(params, v, x, y)
        new = _dot(v, hv).double()
        iters = torch.where(done, iters, torch.full_like(iters, i + 1))
        converged = (new - eig).abs() <= tol * new.abs().clamp_min(1e-12)
        eig = torch.where(done, eig, new)
        done = done | (converged & (i > 0))
        if bool(done.all()):
            break
        norm = _dot(hv, hv).sqrt().clamp_min(1e-30)
        v = {k: t / norm.view(-1, *[1] * (t.dim() - 1)) for k, t in hv.items()}
    return eig, iters


def hutchinson_trace(
    hvp, params: Params, x: torch.Tensor, y: torch.Tensor, *, tol: float = 1e-3, max_samples: int = 100,
    block: int = 10, seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hessian trace per seed: the mean of ``v^T H v`` over Rademacher vectors ``v``.

    Vectors are drawn ``block`` at a time and a block is one call, vmapped over vectors
    and seeds; a seed stops when its running mean changes by less than ``tol`` relative
    after a block, or at ``max_samples``. Returns ``(traces, samples used)``.
    """
    block_hvp = vmap(hvp, in_dims=(None, 0, None, None))
    gen = torch.Generator().manual_seed(seed)
    n_seeds = next(iter(params.values())).shape[0]
    total = torch.zeros(n_seeds, dtype=torch.float64)
    count = torch.zeros(n_seeds, dtype=torch.int64)
    done = torch.zeros(n_seeds, dtype=torch.bool)
    mean = torch.zeros(n_seeds, dtype=torch.float64)
    drawn = 0
    while drawn < max_samples and not bool(done.all()):
        n = min(block, max_samples - drawn)
        v = {k: torch.randint(0, 2, (n, *p.shape), generator=gen).to(p.dtype) * 2 - 1 for k, p in params.items()}
        hv = block_hvp(params, v, x, y)
        quad = sum((v[k] * hv[k]).flatten(2).sum(2) for k in v).double().sum(0)  # (S,): sum over the block
        total = torch.where(done, total, total + quad)
        count = torch.where(done, count, count + n)
        drawn += n
        new_mean = total / count.clamp_min(1)
        settled = (new_mean - mean).abs() <= tol * new_mean.abs().clamp_min(1e-12)
        done = done | (settled & (count > block))
        mean = new_mean
    return mean, count
