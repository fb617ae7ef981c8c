"""Optimisers whose conjugacy the maths gives (Redman et al.'s validation case, after Ghai,
Lu and Hazan, "Non-convex online learning via algorithmic equivalence").

On ``f(x) = sum_i tan(x_i)`` over the box ``[1/T, 1]^d``:

- online mirror descent with the log barrier ``R(x) = -sum log x_i``:
  ``1/x' = 1/x + eta sec^2(x)``;
- online gradient descent in log coordinates ``u = log x`` on ``f(exp(u))``:
  ``u' = u - eta exp(u) sec^2(exp(u))``: to first order in ``eta`` the same map as mirror
  descent seen through ``x = exp(u)``, so the two are conjugate (their Koopman spectra
  agree up to ``O(eta)``);
- the bisection method on ``f(z) = 0`` coordinate-wise from brackets ``[a, b]``: it
  halves an interval each step, a different dynamics altogether.

Both projections are onto a box and the regularisers are separable, so the Bregman and the
Euclidean projections are coordinate-wise clipping. Starting points are the grids of
Redman et al.'s script (5 x 5 of each).
"""

from __future__ import annotations

import numpy as np

ETA = 1e-2
STEPS = 100
DIM = 2
GRID = 5


def _grid(lo: float, hi: float) -> np.ndarray:
    a, b = np.meshgrid(np.linspace(lo, hi, GRID), np.linspace(lo, hi, GRID))
    return np.column_stack([a.ravel(), b.ravel()])


def _sec2(x: np.ndarray) -> np.ndarray:
    return 1.0 / np.cos(x) ** 2


def mirror_descent() -> list[np.ndarray]:
    """Trajectories ``(STEPS, DIM)`` of online mirror descent with the log barrier."""
    lo, hi = 1.0 / STEPS, 1.0
    out = []
    for x0 in _grid(0.1, 0.9):
        x = np.empty((STEPS, DIM))
        x[0] = x0
        for t in range(1, STEPS):
            x[t] = np.clip(1.0 / (1.0 / x[t - 1] + ETA * _sec2(x[t - 1])), lo, hi)
        out.append(x)
    return out


def gradient_descent_log() -> list[np.ndarray]:
    """Trajectories of online gradient descent in ``u = log x`` (the state is ``u``)."""
    lo, hi = np.log(1.0 / STEPS), 0.0
    out = []
    for u0 in _grid(-2.3, -0.1):
        u = np.empty((STEPS, DIM))
        u[0] = u0
        for t in range(1, STEPS):
            x = np.exp(u[t - 1])
            u[t] = np.clip(u[t - 1] - ETA * x * _sec2(x), lo, hi)
        out.append(u)
    return out


def bisection() -> list[np.ndarray]:
    """Trajectories of the bisection method for ``sum tan(z) = 0`` (midpoints of brackets)."""
    out = []
    for a0, b0 in zip(_grid(-4 / 3, -1 / 3), _grid(1 / 7, 8 / 7)):
        a, b = a0.copy(), b0.copy()
        z = np.empty((STEPS, DIM))
        z[0] = (a + b) / 2
        for t in range(1, STEPS):
            value = np.tan(z[t - 1]).sum()
            if value < 0:
                a = z[t - 1]
            elif value > 0:
                b = z[t - 1]
            z[t] = (a + b) / 2
        out.append(z)
    return out
