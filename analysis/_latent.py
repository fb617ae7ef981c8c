"""Learned latent coordinates with a latent map, as in MORALS (Vieira et al., arXiv 2310.03246).

An encoder ``E: R^D -> [-1, 1]^d``, a decoder ``Dec: R^d -> R^D`` and a latent map
``g: [-1, 1]^d -> [-1, 1]^d`` are trained together on snapshot pairs ``(x_t, x_{t+1})`` with
MORALS's three losses (their ``loss_ae1``, ``loss_ae2``, ``loss_dyn``)::

    w0 |Dec(E(x_t)) - x_t|^2 + w1 |Dec(g(E(x_t))) - x_{t+1}|^2 + w2 |g(E(x_t)) - E(x_{t+1})|^2

``g`` is then the map whose Morse graph CMGDB computes on the box ``[-1, 1]^d``.

Following MORALS's ``models.py``: every net is an MLP with ReLU hidden layers, the encoder and
the latent map end in ``tanh`` (so the latent box is ``[-1, 1]^d`` and ``g`` maps it into
itself), losses are mean squared errors, the optimiser is Adam. Our choices, and why:

- Inputs are centred per coordinate and divided by one global scale (not per coordinate, and
  not MORALS's per-coordinate min-max): in weight space a per-coordinate scale blows nearly
  constant coordinates up to the size of the ones that move, while one scale keeps the
  geometry. The scale makes the reconstruction loss the fraction of (kept) variance left
  unexplained, the same for any D, so the loss weights mean the same thing in every problem.
  The decoder's output is therefore linear (MORALS's sigmoid matched its [0, 1] data).
- When D exceeds ``MAX_FEATURES`` the centred data are first rotated onto their top principal
  directions (randomised SVD). The rotation is orthonormal, so distances inside that subspace
  are unchanged; what is dropped is variance a d-dimensional latent could not reconstruct
  anyway. It makes the cost of training independent of D (a 2000-wide first layer costs 17x
  more per step, which would leave only tens of steps in the time budget).
- The latent map is residual, ``g(z) = tanh(atanh(z) + f(z))`` (see :class:`_LatentMap`), and
  after the joint training it is refitted alone to the frozen encoder's pairs (see
  :meth:`LatentDynamics._refit_map`). Both because training maps take small steps: with one-step
  pairs of gradient descent in a 40-D double well, MORALS's plain map and joint training alone
  sent 10-25% of runs to the wrong well or to spurious fixed points; with both, 1-3%.
- A fixed number of epochs and steps, no early stopping: the fit takes a known time and is a
  pure function of the data and the seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_FEATURES = 128  # inputs wider than this are rotated onto their top principal directions
LAYERS = 2  # hidden layers per net (MORALS's default)
MAP_STEPS = 500  # full-batch steps of the second stage, which fits the latent map alone
CHUNK = 65536  # points per forward pass of latent_map: bounds memory at CHUNK x hidden floats


def _mlp(n_in: int, hidden: int, n_out: int, bounded: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(LAYERS):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden, n_out))
    if bounded:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class _LatentMap(nn.Module):
    """``g(z) = tanh(atanh(z) + f(z))``: a residual step taken in the unbounded coordinates.

    Training maps take small steps, so g is close to the identity and what matters is the
    displacement ``g(z) - z``, often a hundredth of the box. MORALS's plain ``tanh(MLP(z))``
    must learn the identity and the step together, and its error is then as large as the step:
    rollouts drift and it grows spurious fixed points. Here the identity is built in and the
    MLP learns only the step; the outer tanh still maps R^d into the box.
    """

    def __init__(self, dims: int, hidden: int):
        super().__init__()
        self.step = _mlp(dims, hidden, dims, bounded=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        inner = torch.atanh(z.clamp(-1 + 1e-6, 1 - 1e-6))  # corners of the box stay finite
        return torch.tanh(inner + self.step(z))


def _check_finite(name: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(a)))} NaN or infinite entries")


class LatentDynamics:
    """Autoencoder plus latent map fitted to pairs ``y[i] = map(x[i])``.

    After :meth:`fit`, :meth:`encode` sends states to the latent box ``[lower, upper]`` =
    ``[-1, 1]^dims`` and :meth:`latent_map` is the learned map on that box. ``loss_`` (last
    joint batch) and ``map_loss_`` (latent map refit) are kept for diagnostics.

    Defaults fit 1000 pairs in about 1.4 s at D = 40 and 2 s at D = 2000 on one thread:
    100 epochs of batches of 256 (400 Adam steps) and 500 full-batch steps for the map.
    """

    def __init__(self, dims: int = 2, hidden: int = 64, epochs: int = 100, lr: float = 3e-3,
                 batch: int = 256, seed: int = 0, weights: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        if dims < 1 or hidden < 1 or epochs < 1 or batch < 1:
            raise ValueError(f"dims, hidden, epochs and batch must be positive, "
                             f"got {dims}, {hidden}, {epochs}, {batch}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if len(weights) != 3 or min(weights) < 0 or max(weights) == 0:
            raise ValueError(f"weights must be three non-negative numbers, not all zero, got {weights}")
        self.dims, self.hidden, self.epochs, self.lr, self.batch = dims, hidden, epochs, lr, batch
        self.seed = seed
        self.weights = tuple(float(w) for w in weights)
        self.lower = -np.ones(dims)
        self.upper = np.ones(dims)

    def fit(self, x: np.ndarray, y: np.ndarray) -> LatentDynamics:
        """Train on pairs ``y[i] = map(x[i])``, both (n, D) arrays; returns ``self``."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 2 or len(x) < 2 or x.shape[1] < 1:
            raise ValueError(f"need x and y as two (n, D) arrays of the same shape with n >= 2, "
                             f"got {x.shape} and {y.shape}")
        _check_finite("x", x)
        _check_finite("y", y)
        with torch.random.fork_rng(devices=[]):  # seeded SVD, init and shuffles; caller's RNG untouched
            torch.manual_seed(self.seed)
            self._fit_scaling(np.concatenate([x, y]))
            xt = torch.as_tensor(self._standardise(x), dtype=torch.float32)
            yt = torch.as_tensor(self._standardise(y), dtype=torch.float32)
            k = xt.shape[1]
            self.encoder_ = _mlp(k, self.hidden, self.dims, bounded=True)
            self.decoder_ = _mlp(self.dims, self.hidden, k, bounded=False)
            self.map_ = _LatentMap(self.dims, self.hidden)
            params = [p for net in (self.encoder_, self.decoder_, self.map_) for p in net.parameters()]
            opt = torch.optim.Adam(params, lr=self.lr)
            w0, w1, w2 = self.weights
            n = len(xt)
            for _ in range(self.epochs):
                for idx in torch.randperm(n).split(self.batch):
                    xb, yb = xt[idx], yt[idx]
                    zx = self.encoder_(xb)
                    zy_pred = self.map_(zx)
                    loss = (w0 * (self.decoder_(zx) - xb).pow(2).mean()
                            + w1 * (self.decoder_(zy_pred) - yb).pow(2).mean()
                            + w2 * (zy_pred - self.encoder_(yb)).pow(2).mean())
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            self.loss_ = float(loss.detach())
            self._refit_map(xt, yt)
        for net in (self.encoder_, self.decoder_, self.map_):
            net.eval().requires_grad_(False)
        return self

    def _refit_map(self, xt: torch.Tensor, yt: torch.Tensor) -> None:
        # Second stage: with the encoder frozen, fit g alone to the encoded pairs. In the joint
        # loss g is also pulled to where the decoder happens to reconstruct x_{t+1} best, an
        # offset as large as the reconstruction error, which swamps the small latent steps;
        # alone it is a plain regression z_t -> z_{t+1}. Full batch, learning rate annealed to
        # zero so the last steps polish the fit.
        with torch.no_grad():
            zx, zy = self.encoder_(xt), self.encoder_(yt)
        opt = torch.optim.Adam(self.map_.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, MAP_STEPS)
        for _ in range(MAP_STEPS):
            loss = (self.map_(zx) - zy).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        self.map_loss_ = float(loss.detach())

    def _fit_scaling(self, data: np.ndarray) -> None:
        self.mean_ = data.mean(axis=0)
        centred = data - self.mean_
        self.basis_: np.ndarray | None = None
        if data.shape[1] > MAX_FEATURES:
            # randomised SVD in torch (it honours torch's thread setting; seeded by the caller)
            k = min(MAX_FEATURES, len(data))
            _, _, v = torch.svd_lowrank(torch.as_tensor(centred), q=k, niter=3, M=None)
            self.basis_ = v.numpy()  # (D, k), orthonormal columns
            centred = centred @ self.basis_
        # one scale for all coordinates: mean squared error 1 = nothing explained
        self.scale_ = max(float(np.sqrt(np.mean(centred.var(axis=0)))), 1e-12)

    def _standardise(self, states: np.ndarray) -> np.ndarray:
        centred = states - self.mean_
        if self.basis_ is not None:
            centred = centred @ self.basis_
        return centred / self.scale_

    def _check_fitted(self) -> None:
        if not hasattr(self, "map_"):
            raise RuntimeError("LatentDynamics is not fitted yet: call fit(x, y) first")

    def encode(self, states: np.ndarray) -> np.ndarray:
        """Latent coordinates, in ``[-1, 1]^dims``, of an (m, D) array of states."""
        self._check_fitted()
        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] != len(self.mean_):
            raise ValueError(f"states must be (m, {len(self.mean_)}), got {states.shape}")
        _check_finite("states", states)
        z = self.encoder_(torch.as_tensor(self._standardise(states), dtype=torch.float32))
        return z.numpy().astype(np.float64)

    def latent_map(self, z: np.ndarray) -> np.ndarray:
        """The learned map ``g`` on an (m, dims) array of latent points (vectorised)."""
        self._check_fitted()
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dims:
            raise ValueError(f"z must be (m, {self.dims}), got {z.shape}")
        zt = torch.as_tensor(z, dtype=torch.float32)
        # in chunks: CMGDB may ask for millions of points at once
        return torch.cat([self.map_(c) for c in zt.split(CHUNK)]).numpy().astype(np.float64)
