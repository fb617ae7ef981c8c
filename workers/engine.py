"""The batched training engine: every variant of a unit trains as one stacked model.

Parameters of ``V`` variants are stacked along a leading dimension and the model is
called through ``torch.func.functional_call`` under ``vmap``; per-variant learning rates,
weight decays, label noise and data subsets are just per-variant tensors and indices.
The optimisers are written directly over the stacked tensors (updated in place) and follow
``torch.optim.SGD`` (momentum, no dampening) and ``torch.optim.Adam`` (L2 weight decay)
operation for operation, which the equivalence test checks against ``torch.optim``.

A variant whose loss turns NaN or infinite is frozen (its updates are undone), marked
``diverged`` and its trajectory ends at that step; the others are unaffected because
every batched operation is independent across the variant dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from workers.config import VariantConfig
from workers.datasets import (
    STREAM_PROJECTION,
    BatchStream,
    load_split,
    seed_stream,
    variant_training_set,
)
from workers.models import build_model, flatten_params, init_params

# Batches are sampled this many steps at a time (bounded memory for long runs).
_SAMPLE_BLOCK = 256


@dataclass
class UnitResult:
    """What training a unit produced, as CPU numpy arrays indexed ``[variant, ...]``."""

    run_ids: list[str]
    loss: np.ndarray  # (V, T+1) minibatch loss at theta_t (float32)
    acc: np.ndarray  # (V, T+1)
    grad_norm: np.ndarray  # (V, T+1)
    lr: np.ndarray  # (V,)
    epoch: np.ndarray  # (V, T+1) int32
    last_step: np.ndarray  # (V,) last recorded step (T, or the step of divergence)
    status: list[str]  # "ok" | "diverged"
    snapshot_steps: np.ndarray  # (S,) steps at which theta was recorded
    snapshots: np.ndarray  # (S, V, D) recorded (possibly projected) parameters
    final_params: np.ndarray  # (V, P) full flattened parameters at the end
    final_metrics: dict[str, np.ndarray]  # each (V,): train/test loss and accuracy


def snapshot_steps(steps: int, every: int) -> np.ndarray:
    """Steps at which parameters are recorded: multiples of ``every`` and the last step."""
    s = np.arange(0, steps + 1, every, dtype=np.int64)
    if s[-1] != steps:
        s = np.append(s, steps)
    return s


def projection_matrix(n_params: int, dim: int, seed: int) -> np.ndarray:
    """Seeded Gaussian random projection ``(dim, n_params)`` scaled by ``1/sqrt(dim)``."""
    rng = seed_stream(seed, STREAM_PROJECTION)
    return (rng.standard_normal((dim, n_params)) / np.sqrt(dim)).astype(np.float32)


def _check_unit(configs: Sequence[VariantConfig]) -> None:
    if not configs:
        raise ValueError("a unit needs at least one variant")
    keys = {c.shape_key for c in configs}
    if len(keys) != 1:
        raise ValueError("variants of one unit must share parameter shapes, batch size and optimiser")


def _per_variant(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """A (V,) vector shaped to broadcast against a stacked (V, ...) parameter."""
    t = torch.tensor(values, dtype=like.dtype, device=like.device)
    return t.view(-1, *([1] * (like.dim() - 1)))


class _Optimizer:
    """Functional SGD-momentum / Adam over stacked parameters with per-variant lr and wd."""

    def __init__(self, cfg: VariantConfig, lrs, wds, params: dict[str, torch.Tensor]):
        self.kind = cfg.optimizer
        self.cfg = cfg
        self.lr = {k: _per_variant(lrs, p) for k, p in params.items()}
        self.wd = {k: _per_variant(wds, p) for k, p in params.items()}
        # like torch.optim, skip the decay term when no variant uses it (g + 0 * p == g)
        self.use_wd = any(w != 0 for w in wds)
        self.t = 0
        self.buf: dict[str, torch.Tensor] = {}
        self.exp_avg = {k: torch.zeros_like(p) for k, p in params.items()} if self.kind == "adam" else {}
        self.exp_avg_sq = {k: torch.zeros_like(p) for k, p in params.items()} if self.kind == "adam" else {}

    def step(self, params: dict[str, torch.Tensor], grads, frozen: torch.Tensor | None = None) -> None:
        """Update ``params`` and the optimiser state in place; variants where the (V,) bool
        ``frozen`` is true keep their parameters and state unchanged."""
        self.t += 1
        # In-place updates allocate far less than out-of-place ones (same arithmetic, so
        # the same floats). Frozen variants are updated too, then restored: every op is
        # independent across variants, so their NaNs cannot reach the others.
        state = [*params.values(), *self.buf.values(), *self.exp_avg.values(), *self.exp_avg_sq.values()]
        saved = [s[frozen] for s in state] if frozen is not None else []
        for k, p in params.items():
            g = grads[k] + self.wd[k] * p if self.use_wd else grads[k]
            if self.kind == "sgd":
                m = self.cfg.momentum
                if m != 0:
                    if k in self.buf:
                        self.buf[k].mul_(m).add_(g)
                    else:
                        self.buf[k] = g.clone()
                    g = self.buf[k]
                p.sub_(self.lr[k] * g)
            else:  # adam, as torch.optim.Adam (single-tensor path)
                b1, b2 = self.cfg.beta1, self.cfg.beta2
                ea = self.exp_avg[k].lerp_(g, 1 - b1)
                eas = self.exp_avg_sq[k].mul_(b2).add_((1 - b2) * g * g)
                bc1 = 1 - b1**self.t
                bc2 = 1 - b2**self.t
                denom = eas.sqrt() / (bc2**0.5) + self.cfg.eps
                p.sub_((self.lr[k] / bc1) * ea / denom)
        for s, old in zip(state, saved):
            s[frozen] = old


def train_unit(configs: Sequence[VariantConfig], device: torch.device | str = "cpu") -> UnitResult:
    """Train all variants of a unit together and return their trajectories and finals."""
    _check_unit(configs)
    device = torch.device(device)
    c0 = configs[0]
    V, T, B = len(configs), c0.steps, c0.batch_size
    split = load_split(c0.dataset, c0.test_fraction, c0.split_seed, c0.dataset_options)
    n_in, n_out = split.n_features, split.n_classes

    model = build_model(c0.model, n_in=n_in, n_out=n_out, width=c0.width, depth=c0.depth).to(device)
    inits = [
        init_params(c.model, n_in=n_in, n_out=n_out, width=c.width, depth=c.depth, seed=c.seed)
        for c in configs
    ]
    params = {k: torch.stack([p[k] for p in inits]).to(device) for k in inits[0]}
    n_params = int(sum(p[0].numel() for p in params.values()))

    data = [
        variant_training_set(split, seed=c.seed, train_fraction=c.train_fraction, label_noise=c.label_noise)
        for c in configs
    ]
    x_train = torch.from_numpy(split.x_train).to(device)
    # labels indexed by position in each variant's own training set
    n_max = max(len(d.indices) for d in data)
    idx_pad = np.zeros((V, n_max), dtype=np.int64)
    lab_pad = np.zeros((V, n_max), dtype=np.int64)
    valid = np.zeros((V, n_max), dtype=bool)
    for v, d in enumerate(data):
        n = len(d.indices)
        idx_pad[v, :n], lab_pad[v, :n], valid[v, :n] = d.indices, d.labels, True
    pos_to_row = torch.from_numpy(idx_pad).to(device)
    labels = torch.from_numpy(lab_pad).to(device)
    streams = [BatchStream(len(d.indices), B, c.seed) for d, c in zip(data, configs)]

    def loss_fn(p, x, y):
        logits = functional_call(model, p, (x,))
        return F.cross_entropy(logits, y), logits

    step_fn = vmap(grad_and_value(loss_fn, has_aux=True))
    opt = _Optimizer(c0, [c.lr for c in configs], [c.weight_decay for c in configs], params)

    snap_steps = snapshot_steps(T, c0.record_every)
    snap_set = set(snap_steps.tolist())  # O(1) membership; `in` on the array scans it
    proj = None
    if c0.projection_dim:
        proj = torch.from_numpy(projection_matrix(n_params, c0.projection_dim, c0.projection_seed)).to(device)
    snaps: list[torch.Tensor] = []

    loss_h = torch.full((V, T + 1), float("nan"), device=device)
    acc_h = torch.full((V, T + 1), float("nan"), device=device)
    gn_h = torch.full((V, T + 1), float("nan"), device=device)
    alive = torch.ones(V, dtype=torch.bool, device=device)
    all_alive = True  # while true, no masking is needed anywhere
    last_step = np.full(V, T, dtype=np.int64)

    block = None
    for t in range(T + 1):
        if t % _SAMPLE_BLOCK == 0:
            n_block = min(_SAMPLE_BLOCK, T + 1 - t)
            block = torch.from_numpy(np.stack([s.take(n_block) for s in streams], axis=1)).to(device)
        pos = block[t % _SAMPLE_BLOCK]  # (V, B) positions in each variant's training set
        # gather + index_select pick the same rows as fancy indexing, several times faster
        rows = torch.gather(pos_to_row, 1, pos)
        xb = x_train.index_select(0, rows.view(-1)).view(V, B, -1)
        yb = torch.gather(labels, 1, pos)
        if t in snap_set:
            flat = flatten_params(params, batch_dims=1)
            snaps.append(flat @ proj.T if proj is not None else flat.clone())
        grads, (loss, logits) = step_fn(params, xb, yb)
        acc = (logits.argmax(-1) == yb).float().mean(-1)
        gn = torch.sqrt(sum(g.pow(2).flatten(1).sum(1) for g in grads.values()))
        if all_alive:
            loss_h[:, t], acc_h[:, t], gn_h[:, t] = loss.detach(), acc, gn
        else:  # record only for variants still training: a diverged one keeps its last row
            loss_h[:, t] = torch.where(alive, loss.detach(), loss_h[:, t])
            acc_h[:, t] = torch.where(alive, acc, acc_h[:, t])
            gn_h[:, t] = torch.where(alive, gn, gn_h[:, t])
        bad = alive & ~torch.isfinite(loss)
        if bool(bad.any()):
            for v in torch.nonzero(bad).flatten().tolist():
                last_step[v] = t
            alive = alive & ~bad
            all_alive = False
        if t < T:
            opt.step(params, grads, frozen=None if all_alive else ~alive)

    epoch = (np.arange(T + 1)[None, :] * B) // np.array([len(d.indices) for d in data])[:, None]
    final_metrics = _evaluate(model, params, split, x_train, pos_to_row, labels, valid, device)
    return UnitResult(
        run_ids=[c.run_id for c in configs],
        loss=loss_h.cpu().numpy(),
        acc=acc_h.cpu().numpy(),
        grad_norm=gn_h.cpu().numpy(),
        lr=np.array([c.lr for c in configs], dtype=np.float32),
        epoch=epoch.astype(np.int32),
        last_step=last_step,
        status=["ok" if s == T else "diverged" for s in last_step],
        snapshot_steps=snap_steps,
        snapshots=torch.stack(snaps).cpu().numpy(),
        final_params=flatten_params(params, batch_dims=1).cpu().numpy(),
        final_metrics=final_metrics,
    )


@torch.no_grad()
def _evaluate(model, params, split, x_train, pos_to_row, labels, valid, device) -> dict[str, np.ndarray]:
    """Full-set loss and accuracy of every variant: its own (noisy) training set and the
    sweep's held-out test split."""

    def per_sample(p, x, y):
        logits = functional_call(model, p, (x,))
        return F.cross_entropy(logits, y, reduction="none"), (logits.argmax(-1) == y).float()

    mask = torch.from_numpy(valid).to(device).float()
    tr_loss, tr_hit = vmap(per_sample)(params, x_train[pos_to_row], labels)
    count = mask.sum(1)
    x_test = torch.from_numpy(split.x_test).to(device)
    y_test = torch.from_numpy(split.y_test).to(device)
    te_loss, te_hit = vmap(per_sample, in_dims=(0, None, None))(params, x_test, y_test)
    out = {
        "final_train_loss": (tr_loss * mask).sum(1) / count,
        "final_train_acc": (tr_hit * mask).sum(1) / count,
        "final_test_loss": te_loss.mean(1),
        "final_test_acc": te_hit.mean(1),
    }
    return {k: v.float().cpu().numpy() for k, v in out.items()}
