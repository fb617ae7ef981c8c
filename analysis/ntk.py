"""Evolution of the empirical neural tangent kernel over training (Fort et al., NeurIPS
2020, "Deep learning versus kernel learning").

The empirical NTK of a model with parameters ``theta`` on a fixed probe set of ``n``
inputs is ``K = J J^T`` with ``J`` the Jacobian of the logits with respect to ``theta``;
here, as in neural-tangents' default (``trace_axes=(-1,)``), summed over the logits:
``K_ij = sum_c <d f_c(x_i) / d theta, d f_c(x_j) / d theta>``, an ``n x n`` matrix. The
Jacobians are per-sample ``torch.func.jacrev`` under ``vmap`` (one batched call per chunk
of probe points, no per-sample Python loop), and ``K`` one matrix product.

Along a run: the kernel distance ``S(K_s, K_t) = 1 - <K_s, K_t>_F / (|K_s|_F |K_t|_F)`` to
the initial and to the final kernel, and the kernel velocity ``S(K_prev, K_t) / (t -
prev)`` per step between consecutive recordings. Fort et al. find a short chaotic phase
in which the kernel changes fast, then slow steady change; :func:`transition_step` says
where the first gives way to the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

METHOD_VERSION = 1  # bump when a change alters results: stored results of older versions are redone
# kernels closer than this are one kernel up to float32 round-off: such a run has no transition
STILL = 1e-6
SETTLE_DROP = 10.0  # transition: the velocity has fallen to a tenth of its early peak
# Rough budget of one chunk's per-sample Jacobians (probe points x classes x parameters).
_CHUNK_BYTES = 200_000_000


def empirical_ntk(model: torch.nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The ``(n, n)`` empirical NTK of ``model`` at ``params`` on the probe inputs ``x``
    (summed over the logits), in ``params``' dtype.

    Per chunk of probe points, the per-sample Jacobians of each parameter tensor come from
    one vmapped ``jacrev``; the kernel sums their products tensor by tensor (no
    concatenated Jacobian: copying it cost more than the products)."""
    params = dict(params)

    def logits_one(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    per_sample = vmap(jacrev(logits_one), in_dims=(None, 0))
    n_params = sum(p.numel() for p in params.values())
    with torch.no_grad():
        n_classes = functional_call(model, params, (x[:1],)).shape[-1]
    element = next(iter(params.values())).element_size()
    chunk = max(1, _CHUNK_BYTES // (n_classes * n_params * element))
    starts = range(0, len(x), chunk)
    jacs = [{k: j.reshape(j.shape[0], -1) for k, j in per_sample(params, x[a:a + chunk]).items()} for a in starts]
    dtype = next(iter(params.values())).dtype
    kernel = torch.zeros((len(x), len(x)), dtype=dtype)
    for i, a in enumerate(starts):
        for b_i, b in enumerate(starts[:i + 1]):
            block = sum(jacs[i][k] @ jacs[b_i][k].T for k in params)
            kernel[a:a + chunk, b:b + chunk] = block
            kernel[b:b + chunk, a:a + chunk] = block.T
    return kernel


def kernel_distance(k1: torch.Tensor | np.ndarray, k2: torch.Tensor | np.ndarray) -> float:
    """``1 - <K1, K2>_F / (|K1|_F |K2|_F)``: 0 for kernels equal up to scale, at most 1
    for positive semi-definite ones."""
    a = torch.as_tensor(k1, dtype=torch.float64).flatten()
    b = torch.as_tensor(k2, dtype=torch.float64).flatten()
    norm = float(a.norm() * b.norm())
    if norm == 0.0:
        raise ValueError("kernel distance of a zero kernel is undefined")
    return float(1.0 - float(a @ b) / norm)


@dataclass(frozen=True)
class KernelPath:
    """A run's kernel over its recorded steps; ``velocity[0]`` is NaN (no earlier kernel)."""

    steps: np.ndarray
    distance_init: np.ndarray
    distance_final: np.ndarray
    velocity: np.ndarray
    transition: int | None  # where fast change gives way to slow (None: never settles, or never moves)


def kernel_path(model: torch.nn.Module, thetas: np.ndarray, steps: np.ndarray, x: torch.Tensor,
                dtype: torch.dtype = torch.float64) -> KernelPath:
    """The kernel distances and velocity of one run from its full parameter snapshots
    ``thetas`` (``(T, P)``, module order) at recorded ``steps``; kernels are computed one
    at a time (the final one first), so memory holds three ``n x n`` kernels."""
    thetas = np.asarray(thetas)
    steps = np.asarray(steps, dtype=np.int64)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    n_params = sum(int(np.prod(s)) for s in shapes.values())
    if thetas.ndim != 2 or thetas.shape[1] != n_params:
        raise ValueError(f"theta has {thetas.shape[-1] if thetas.ndim == 2 else thetas.shape} columns but the "
                         f"model has {n_params} parameters: the NTK needs full (unprojected) snapshots")
    if len(thetas) != len(steps) or len(steps) < 2:
        raise ValueError("need at least two snapshots, one step per snapshot")
    x = x.to(dtype) if x.is_floating_point() else x

    def kernel(k: int) -> torch.Tensor:
        flat = torch.from_numpy(np.asarray(thetas[k], dtype=np.float64)).to(dtype)
        params = dict(zip(shapes, (p.reshape(s) for p, s in
                                   zip(torch.split(flat, [int(np.prod(s)) for s in shapes.values()]),
                                       shapes.values()))))
        return empirical_ntk(model, params, x)

    final = kernel(len(steps) - 1)
    first = kernel(0)
    d_init, d_final, velocity = np.zeros(len(steps)), np.zeros(len(steps)), np.full(len(steps), np.nan)
    d_final[0] = kernel_distance(first, final)
    prev = first
    for k in range(1, len(steps)):
        cur = final if k == len(steps) - 1 else kernel(k)
        d_init[k] = kernel_distance(first, cur)
        d_final[k] = kernel_distance(cur, final)
        velocity[k] = kernel_distance(prev, cur) / max(int(steps[k] - steps[k - 1]), 1)
        prev = cur
    moved = float(np.max(d_init)) > STILL
    return KernelPath(steps, d_init, d_final, velocity, transition_step(steps, velocity) if moved else None)


def transition_step(steps: np.ndarray, velocity: np.ndarray, drop: float = SETTLE_DROP) -> int | None:
    """Where the fast early change of the kernel gives way to slow change: the first
    recorded step after the velocity's peak at which the velocity (a running median of
    three recordings, against single noisy ones) has fallen below ``1 / drop`` of that
    peak. ``None`` with fewer than four known velocities, or when it never falls that far.

    Our rule, not Fort et al.'s (they read it off the curves): their late velocity is
    "roughly constant", but with a constant learning rate here it keeps decaying slowly, so
    a rule anchored on the late level moves with the run's length; the early peak does not.
    """
    v = np.asarray(velocity, dtype=np.float64)
    known = np.flatnonzero(np.isfinite(v))
    if len(known) < 4:
        return None
    vk = v[known]
    smooth = np.array([np.median(vk[max(i - 1, 0):i + 2]) for i in range(len(vk))])
    peak = int(np.argmax(smooth))
    if not smooth[peak] > 0:
        return None
    below = np.flatnonzero(smooth[peak:] < smooth[peak] / drop)
    if not len(below):
        return None
    # the velocity at index k is over the interval ending at steps[k]: slow from there on
    return int(np.asarray(steps)[known[peak + below[0]]])
