"""The batched training engine: every variant of a unit trains as one stacked model.

Parameters of ``V`` variants are stacked along a leading dimension. MLPs train through
the hand-batched MLP of ``doodl.workers._batched_mlp``; every other family is called through
``torch.func.functional_call`` under ``vmap`` (the fastest exact path of each, measured in
bench/compile_step.py and bench/train_throughput.py); per-variant learning rates
and their schedules, weight decays and the data-quality axes are just per-variant tensors,
indices and seeded generators. The optimisers are written directly over the stacked
tensors (updated in place) and follow ``torch.optim.SGD`` (momentum, no dampening),
``torch.optim.Adam`` (L2 weight decay) and ``torch.optim.AdamW`` (decoupled) operation for
operation, which the equivalence test checks against ``torch.optim`` and
``torch.optim.lr_scheduler``.

A variant whose loss turns NaN or infinite is frozen (its updates are undone), marked
``diverged`` and its trajectory ends at that step; the others are unaffected because
every batched operation is independent across the variant dimension.

With a :class:`doodl.workers.early_stop.StopRule`, the variants it finds doomed at its step
end there as ``stopped``: their final metrics are measured at that step and they leave the
stacked model (parameters, optimiser state, batch streams), so the steps that follow cost
only the variants that go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from doodl.workers._batch_transforms import augment_per_variant, input_noise
from doodl.workers._batched_mlp import BatchedMLP
from doodl.workers.config import VariantConfig
from doodl.workers.datasets import BatchStream, SplitData, dataset_split, variant_data
from doodl.workers.early_stop import StopRule, unit_features
from doodl.workers.models import activation_count, build_model, flatten_params, init_params
from doodl.workers.schedules import is_constant, lr_table
from doodl.workers.seeds import STREAM_AUGMENT, STREAM_INPUT_NOISE, STREAM_PROJECTION, seed_stream, torch_generator

# Batches are sampled this many steps at a time (bounded memory for long runs).
_SAMPLE_BLOCK = 256
# Final evaluation runs over chunks of samples of at most this many values per layer across
# the unit's variants, inputs or activations (a CIFAR-10 unit of 64 variants would otherwise
# need 40 GB at once, and a wide MLP's hidden layers many times its inputs).
_EVAL_VALUES = 1 << 24
# Held-out loss and accuracy are measured at every recorded step on this many points of the
# test split (its order is already a seeded permutation, so the first ones are a fixed
# random subset): the curves that show, say, a train/test gap closing late (grokking).
# 1,024 cost 12% of training on their own (bench/train_throughput.py --record-cost); an
# accuracy on 256 has a standard error of at most 3 points, and the final metrics use the
# whole split.
EVAL_POINTS = 256


@dataclass
class UnitResult:
    """What training a unit produced, as CPU numpy arrays indexed ``[variant, ...]``."""

    run_ids: list[str]
    loss: np.ndarray  # (V, T+1) minibatch loss at theta_t (float32)
    acc: np.ndarray  # (V, T+1)
    grad_norm: np.ndarray  # (V, T+1)
    lr: np.ndarray  # (V, T+1) learning rate used at each step (the schedule's)
    epoch: np.ndarray  # (V, T+1) int32
    last_step: np.ndarray  # (V,) last recorded step (T, or the step it diverged or stopped at)
    status: list[str]  # "ok" | "diverged" | "stopped"
    snapshot_steps: np.ndarray  # (S,) steps at which theta was recorded
    snapshots: np.ndarray  # (S, V, D) recorded (possibly projected) parameters, in record_dtype
    test_loss: np.ndarray  # (S, V) held-out loss at the snapshot steps (EVAL_POINTS test points)
    test_acc: np.ndarray  # (S, V)
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
    """Functional SGD-momentum / Adam / AdamW over stacked parameters with per-variant lr
    and wd; :meth:`step`'s ``lr`` (each variant's rate at this step) applies a schedule."""

    def __init__(self, cfg: VariantConfig, lrs, wds, params: dict[str, torch.Tensor]):
        self.kind = cfg.optimizer
        self.cfg = cfg
        self.lr = {k: _per_variant(lrs, p) for k, p in params.items()}
        self.wd = {k: _per_variant(wds, p) for k, p in params.items()}
        # like torch.optim, skip the decay term when no variant uses it (g + 0 * p == g)
        self.use_wd = any(w != 0 for w in wds) and self.kind != "adamw"
        self.decoupled_wd = any(w != 0 for w in wds) and self.kind == "adamw"
        self.t = 0
        self.buf: dict[str, torch.Tensor] = {}
        adam = self.kind in ("adam", "adamw")
        self.exp_avg = {k: torch.zeros_like(p) for k, p in params.items()} if adam else {}
        self.exp_avg_sq = {k: torch.zeros_like(p) for k, p in params.items()} if adam else {}
        # scratch tensors for every intermediate, reused each step: a fresh parameter-sized
        # temporary is new pages whose first touch costs more than the arithmetic
        n_scratch = 3 if adam else 1
        self.scratch = {k: [torch.empty_like(p) for _ in range(n_scratch)] for k, p in params.items()}

    def step(self, params: dict[str, torch.Tensor], grads, frozen: torch.Tensor | None = None,
             lr: torch.Tensor | None = None) -> None:
        """Update ``params`` and the optimiser state in place; variants where the (V,) bool
        ``frozen`` is true keep their parameters and state unchanged. ``lr`` (V,), when
        given, replaces the base rates for this step.

        Every intermediate is computed into a scratch tensor (``out=`` or in place) with
        the operations and operand order of the written formulas, so the floats are those
        of ``torch.optim``'s single-tensor path."""
        self.t += 1
        # Frozen variants are updated too, then restored: every op is independent across
        # variants, so their NaNs cannot reach the others.
        state = [*params.values(), *self.buf.values(), *self.exp_avg.values(), *self.exp_avg_sq.values()]
        saved = [s[frozen] for s in state] if frozen is not None else []
        for k, p in params.items():
            tmp = self.scratch[k]
            g = grads[k]
            if self.use_wd:  # g + wd * p
                g = torch.mul(self.wd[k], p, out=tmp[-1]).add_(grads[k])
            lr_k = self.lr[k] if lr is None else lr.view_as(self.lr[k])
            if self.decoupled_wd:  # as torch.optim.AdamW: decay the weights, not the gradient
                p.mul_(1 - lr_k * self.wd[k])
            if self.kind == "sgd":
                m = self.cfg.momentum
                if m != 0:
                    if k in self.buf:
                        self.buf[k].mul_(m).add_(g)
                    else:
                        self.buf[k] = g.clone()
                    g = self.buf[k]
                p.sub_(torch.mul(lr_k, g, out=tmp[0]))  # p - lr * g
            else:  # adam / adamw, as torch.optim.Adam(W) (single-tensor path)
                b1, b2 = self.cfg.beta1, self.cfg.beta2
                ea = self.exp_avg[k].lerp_(g, 1 - b1)
                eas = self.exp_avg_sq[k].mul_(b2).add_(torch.mul(g, 1 - b2, out=tmp[0]).mul_(g))  # (1-b2)*g*g
                bc1 = 1 - b1**self.t
                bc2 = 1 - b2**self.t
                denom = torch.sqrt(eas, out=tmp[1]).div_(bc2**0.5).add_(self.cfg.eps)
                p.sub_(torch.mul(lr_k / bc1, ea, out=tmp[0]).div_(denom))  # (lr / bc1) * ea / denom
        for s, old in zip(state, saved):
            s[frozen] = old

    def keep(self, rows: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Go on with the variants ``rows`` only, whose parameters are now ``params``."""
        for table in (self.lr, self.wd, self.buf, self.exp_avg, self.exp_avg_sq):
            for k in table:
                table[k] = table[k][rows]
        self.scratch = {k: [torch.empty_like(p) for _ in self.scratch[k]] for k, p in params.items()}


def train_unit(configs: Sequence[VariantConfig], device: torch.device | str = "cpu",
               stop: StopRule | None = None) -> UnitResult:
    """Train all variants of a unit together and return their trajectories and finals;
    with ``stop``, the variants it finds doomed at its step end there (``stopped``)."""
    _check_unit(configs)
    device = torch.device(device)
    c0 = configs[0]
    V, T, B = len(configs), c0.steps, c0.batch_size
    split = dataset_split(c0)
    shape = split.shape

    model = build_model(c0, shape).to(device)
    inits = [init_params(c, shape) for c in configs]
    params = {k: torch.stack([p[k] for p in inits]).to(device) for k in inits[0]}
    del inits  # a second copy of every parameter (doodl.workers.unit_memory counts without it)
    n_params = int(sum(p[0].numel() for p in params.values()))

    data = [variant_data(split, c) for c in configs]
    x_train, _ = _on_device(split, device)
    # labels indexed by position in each variant's own training set
    n_max = max(len(d.indices) for d in data)
    idx_pad = np.zeros((V, n_max), dtype=np.int64)
    lab_pad = np.zeros((V, n_max), dtype=np.int64)
    valid = np.zeros((V, n_max), dtype=bool)
    for v, d in enumerate(data):
        n = len(d.indices)
        idx_pad[v, :n], lab_pad[v, :n], valid[v, :n] = d.indices, d.labels, True
    net = _batched(c0, model, params)
    # per-step learning rates (V, T) of the variants' schedules, from torch's own schedulers
    lrs = None
    if not all(is_constant(c) for c in configs):
        lrs = torch.from_numpy(np.stack([lr_table(c) for c in configs], axis=1)).to(device, torch.float32)
    live = _Live(None, net, _Optimizer(c0, [c.lr for c in configs], [c.weight_decay for c in configs], net.params),
                 [BatchStream(len(d.indices), B, c.seed) for d, c in zip(data, configs)],
                 torch.from_numpy(idx_pad).to(device), torch.from_numpy(lab_pad).to(device), valid,
                 _BatchCorruption(configs, shape.input_shape, device), lrs, torch.ones(V, dtype=torch.bool, device=device))
    del params, net  # the live set's own from here on

    snap_steps = snapshot_steps(T, c0.record_every)
    snap_set = set(snap_steps.tolist())  # O(1) membership; `in` on the array scans it
    proj = None
    if c0.projection_dim:
        proj = torch.from_numpy(projection_matrix(n_params, c0.projection_dim, c0.projection_seed)).to(device)
    # every snapshot is written into one (S, V, D) tensor: no stacking copy at the end
    snaps = torch.full((len(snap_steps), V, c0.projection_dim or n_params), float("nan"), device=device)
    n_snaps = 0
    values = max(split.n_features, activation_count(c0, shape))  # a sample's largest layer, inputs or activations
    n_eval = min(EVAL_POINTS, len(split.y_test))
    held_out = _HeldOut(live.net, split, device, eval_chunk(V, values, n_eval))
    held = torch.full((2, len(snap_steps), V), float("nan"), device=device)  # held-out loss and accuracy

    loss_h = torch.full((V, T + 1), float("nan"), device=device)
    acc_h = torch.full((V, T + 1), float("nan"), device=device)
    gn_h = torch.full((V, T + 1), float("nan"), device=device)
    all_alive = True  # while true, no masking is needed anywhere
    last_step = np.full(V, T, dtype=np.int64)
    status = ["ok"] * V
    ended: list[tuple[list[int], torch.Tensor, dict[str, np.ndarray]]] = []  # (variants, params, metrics)
    stop_at = stop.step(T) if stop is not None and T > 0 else -1

    block = None
    x_batch = x_train.new_empty((V * B, *x_train.shape[1:]))  # reused: see BatchedMLP._buffer
    for t in range(T + 1):
        rows = slice(None) if live.rows is None else live.rows  # the live variants' rows in the records
        if t % _SAMPLE_BLOCK == 0:
            n_block = min(_SAMPLE_BLOCK, T + 1 - t)
            block = torch.from_numpy(np.stack([s.take(n_block) for s in live.streams], axis=1)).to(device)
        pos = block[t % _SAMPLE_BLOCK]  # (V, B) positions in each variant's training set
        # gather + index_select pick the same rows as fancy indexing, several times faster
        picked = torch.gather(live.pos_to_row, 1, pos)
        xb = torch.index_select(x_train, 0, picked.view(-1), out=x_batch).view(-1, B, *shape.input_shape)
        xb = live.corrupt(xb)
        yb = torch.gather(live.labels, 1, pos)
        if t in snap_set:
            flat = live.net.flat()
            if live.rows is not None:
                snaps[n_snaps, rows] = flat @ proj.T if proj is not None else flat
            elif proj is not None:
                torch.matmul(flat, proj.T, out=snaps[n_snaps])
            else:
                snaps[n_snaps].copy_(flat)
            held[:, n_snaps, rows] = torch.stack(held_out())
            n_snaps += 1
        loss, acc = live.net.loss_and_grad(xb, yb)
        grads = live.net.grads
        gn = _grad_norm(grads)
        if all_alive:
            loss_h[rows, t], acc_h[rows, t], gn_h[rows, t] = loss.detach(), acc, gn
        else:  # record only for variants still training: a diverged one keeps its last row
            alive = live.alive
            loss_h[rows, t] = torch.where(alive, loss.detach(), loss_h[rows, t])
            acc_h[rows, t] = torch.where(alive, acc, acc_h[rows, t])
            gn_h[rows, t] = torch.where(alive, gn, gn_h[rows, t])
        bad = live.alive & ~torch.isfinite(loss)
        if bool(bad.any()):
            for v in live.original(torch.nonzero(bad).flatten()):
                last_step[v], status[v] = t, "diverged"
            live.alive = live.alive & ~bad
            all_alive = False
        if t == stop_at:
            doomed = live.alive & torch.from_numpy(stop.doomed(unit_features(
                t, loss_h[rows].cpu().numpy(), acc_h[rows].cpu().numpy(), gn_h[rows].cpu().numpy(),
                snap_steps[:n_snaps], snaps[:n_snaps, rows].cpu().numpy(), held[1, :n_snaps, rows].cpu().numpy())
            )).to(device)
            if bool(doomed.any()):
                for v in live.original(torch.nonzero(doomed).flatten()):
                    last_step[v], status[v] = t, "stopped"
                ended.append(live.finish(torch.nonzero(doomed).flatten(), c0, model, split, device, values))
                if bool(doomed.all()):
                    break
                kept = torch.nonzero(~doomed).flatten()
                live = live.part(kept, c0, model)
                grads = {k: g[kept] for k, g in grads.items()}  # this step's update is still to come
                block = block[:, kept]
                x_batch = x_train.new_empty((len(kept) * B, *x_train.shape[1:]))
                held_out = _HeldOut(live.net, split, device, eval_chunk(len(kept), values, n_eval))
                all_alive = bool(live.alive.all())
        if t < T:
            live.opt.step(live.net.params, grads, frozen=None if all_alive else ~live.alive,
                          lr=None if live.lrs is None else live.lrs[t])
    else:
        ended.append(live.finish(torch.arange(len(live.alive), device=device), c0, model, split, device, values))

    epoch = (np.arange(T + 1)[None, :] * B) // np.array([len(d.indices) for d in data])[:, None]
    lr_h = np.repeat(np.array([[c.lr] for c in configs], dtype=np.float32), T + 1, axis=1)
    if lrs is not None:
        lr_h[:, :T] = lrs.T.cpu().numpy()
        lr_h[:, T] = lr_h[:, T - 1]  # no update follows the last step: its rate is the last one used
    return UnitResult(
        run_ids=[c.run_id for c in configs],
        loss=loss_h.cpu().numpy(),
        acc=acc_h.cpu().numpy(),
        grad_norm=gn_h.cpu().numpy(),
        lr=lr_h,
        epoch=epoch.astype(np.int32),
        last_step=last_step,
        status=status,
        snapshot_steps=snap_steps,
        snapshots=snaps.to(getattr(torch, c0.record_dtype)).cpu().numpy(),
        test_loss=held[0].cpu().numpy(),
        test_acc=held[1].cpu().numpy(),
        **_finals(ended, V),
    )


@dataclass
class _Live:
    """The variants still in the stacked model, and what is held per variant for them:
    ``rows``, their indices among the unit's variants (``None``: all of them)."""

    rows: torch.Tensor | None
    net: object
    opt: _Optimizer
    streams: list[BatchStream]
    pos_to_row: torch.Tensor
    labels: torch.Tensor
    valid: np.ndarray
    corrupt: _BatchCorruption
    lrs: torch.Tensor | None
    alive: torch.Tensor

    def original(self, idx: torch.Tensor) -> list[int]:
        """The unit's variant indices of live rows ``idx``."""
        return (idx if self.rows is None else self.rows[idx]).tolist()

    def net_of(self, idx: torch.Tensor, cfg: VariantConfig, model: torch.nn.Module):
        """The live rows ``idx`` as a stacked model of their own (copies of their parameters)."""
        named = self.net.named if isinstance(self.net, BatchedMLP) else self.net.params
        return _batched(cfg, model, {k: p[idx].clone() for k, p in named.items()})

    def finish(self, idx: torch.Tensor, cfg: VariantConfig, model: torch.nn.Module, split: SplitData,
               device: torch.device, values: int) -> tuple[list[int], torch.Tensor, dict[str, np.ndarray]]:
        """The unit's variant indices of the live rows ``idx``, their final parameters and metrics."""
        net = self.net if len(idx) == len(self.alive) else self.net_of(idx, cfg, model)
        at = idx.tolist()
        metrics = _evaluate(net, split, self.pos_to_row[idx], self.labels[idx], self.valid[at], device, values)
        return self.original(idx), net.flat().cpu(), metrics

    def part(self, idx: torch.Tensor, cfg: VariantConfig, model: torch.nn.Module) -> _Live:
        """Go on with the live rows ``idx`` only, as a stacked model of their own; the
        optimiser and batch streams move over (this set is not used again)."""
        at = idx.tolist()
        net = self.net_of(idx, cfg, model)
        self.opt.keep(idx, net.params)
        self.corrupt.keep(at)
        rows = idx if self.rows is None else self.rows[idx]
        return _Live(rows, net, self.opt, [self.streams[v] for v in at], self.pos_to_row[idx], self.labels[idx],
                     self.valid[at], self.corrupt, None if self.lrs is None else self.lrs[:, idx], self.alive[idx])


def _finals(ended: list[tuple[list[int], torch.Tensor, dict[str, np.ndarray]]], n: int) -> dict:
    """``final_params`` and ``final_metrics`` of the unit's ``n`` variants from the sets that
    ended (one set of all of them in order, as without early stopping: no copy)."""
    if len(ended) == 1 and ended[0][0] == list(range(n)):
        return {"final_params": ended[0][1].numpy(), "final_metrics": ended[0][2]}
    params = torch.empty((n, ended[0][1].shape[1]), dtype=ended[0][1].dtype)
    metrics = {name: np.full(n, np.nan, dtype=np.float32) for name in ended[0][2]}
    for variants, flat, values in ended:
        params[variants] = flat
        for name, v in values.items():
            metrics[name][variants] = v
    return {"final_params": params.numpy(), "final_metrics": metrics}


def _grad_norm(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each variant's gradient norm over all parameters ``(V,)``: the norm of the per-tensor
    norms (reductions only: no gradient-sized temporary)."""
    norms = [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads.values()]
    return norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms, 1), dim=1)


class _VmapModel:
    """Any family's ``nn.Module`` batched over variants with ``torch.func``: ``vmap`` of
    ``grad_and_value`` through ``functional_call`` on the stacked parameters."""

    def __init__(self, model: torch.nn.Module, params: dict[str, torch.Tensor]):
        self.params = params  # also the named parameters: the optimiser updates them in place
        self.grads: dict[str, torch.Tensor] = {}

        def loss_fn(p, x, y):
            logits = functional_call(model, p, (x,))
            return F.cross_entropy(logits, y), logits

        def per_sample(p, x, y):
            logits = functional_call(model, p, (x,))
            return F.cross_entropy(logits, y, reduction="none"), (logits.argmax(-1) == y).float()

        self._step = vmap(grad_and_value(loss_fn, has_aux=True))
        self._own = vmap(per_sample)
        self._shared = vmap(per_sample, in_dims=(0, None, None))

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and accuracy ``(V,)`` on each variant's batch; gradients in :attr:`grads`."""
        self.grads, (loss, logits) = self._step(self.params, x, y)
        return loss.detach(), (logits.argmax(-1) == y).float().mean(-1)

    def per_sample(self, x: torch.Tensor, y: torch.Tensor, shared: bool = False):
        """Loss and hit ``(V, n)`` per sample: of each variant's own ``x (V, n, ...)``, or
        with ``shared`` of the same ``x (n, ...)``, ``y (n,)`` for all."""
        return (self._shared if shared else self._own)(self.params, x, y)

    def flat(self) -> torch.Tensor:
        """All parameters ``(V, P)`` in module order."""
        return flatten_params(self.params, batch_dims=1)


def _batched(cfg: VariantConfig, model: torch.nn.Module, params: dict[str, torch.Tensor]):
    """The fastest exact batched form of a unit's model: hand-batched for MLPs, ``vmap``
    for the other families (measured in bench/train_throughput.py)."""
    return BatchedMLP(params) if cfg.model == "mlp" else _VmapModel(model, params)


_DEVICE_DATA: dict[tuple[int, str], tuple[SplitData, torch.Tensor, torch.Tensor]] = {}


def _on_device(split: SplitData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's train and test inputs on ``device``, made once per actor and data set
    (a long-lived actor trains many units of one sweep)."""
    key = (id(split), str(device))
    hit = _DEVICE_DATA.get(key)
    if hit is None or hit[0] is not split:
        _DEVICE_DATA.clear()  # one data set at a time: a sweep has one
        hit = (split, torch.from_numpy(split.x_train).to(device), torch.from_numpy(split.x_test).to(device))
        _DEVICE_DATA[key] = hit
    return hit[1], hit[2]


class _HeldOut:
    """Loss and accuracy of every variant on the first ``EVAL_POINTS`` test points."""

    def __init__(self, net, split: SplitData, device: torch.device, chunk: int):
        _, x_test = _on_device(split, device)
        n = min(EVAL_POINTS, len(split.y_test))
        self.x = x_test[:n].view(n, *split.shape.input_shape)
        self.y = torch.from_numpy(split.y_test[:n]).to(device)
        self.net = net
        self.chunk = chunk  # points at a time: bounded activations for wide models

    @torch.no_grad()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.net.per_sample(self.x[s : s + self.chunk], self.y[s : s + self.chunk], shared=True)
                 for s in range(0, len(self.y), self.chunk)]
        loss, hit = (torch.cat([p[i] for p in parts], 1) for i in (0, 1))
        return loss.mean(1), hit.mean(1)


class _BatchCorruption:
    """Per-variant input noise and image augmentation of each drawn batch.

    Each variant draws from generators of its own seed, so its batches do not depend on
    which variants share its unit; a unit without either axis passes batches through.
    """

    def __init__(self, configs: Sequence[VariantConfig], input_shape: tuple[int, ...], device: torch.device):
        self.noise = [(v, torch.tensor([c.input_noise]), torch_generator(c.seed, STREAM_INPUT_NOISE))
                      for v, c in enumerate(configs) if c.input_noise > 0]
        self.augment = [torch_generator(c.seed, STREAM_AUGMENT) if c.augment else None for c in configs]
        self.augmenting = any(c.augment for c in configs)
        if self.augmenting and len(input_shape) != 3:
            raise ValueError(f"data.augment needs image data; this data set's inputs have shape {input_shape}")
        self.device = device

    def keep(self, rows: list[int]) -> None:
        """Go on with the variants ``rows`` only (their generators keep their state)."""
        at = {v: k for k, v in enumerate(rows)}
        self.noise = [(at[v], std, gen) for v, std, gen in self.noise if v in at]
        self.augment = [self.augment[v] for v in rows]
        self.augmenting = any(g is not None for g in self.augment)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        if not (self.noise or self.augmenting):
            return xb
        xb = augment_per_variant(xb, self.augment) if self.augmenting else xb.clone()
        for v, std, gen in self.noise:
            xb[v] = input_noise(xb[v : v + 1].cpu(), std, gen)[0].to(self.device)
        return xb


def eval_chunk(variants: int, values_per_sample: int, n: int) -> int:
    """Samples per chunk when ``n`` samples are evaluated: at most ``_EVAL_VALUES`` values (a
    sample's input or all its activations, whichever is more) across the variants, in chunks
    of equal size (a small last chunk would cost a pass of its own)."""
    cap = max(1, _EVAL_VALUES // max(1, variants * values_per_sample))
    parts = max(1, -(-n // cap))
    return max(1, -(-n // parts))


@torch.no_grad()
def _evaluate(net, split, pos_to_row, labels, valid, device, values: int) -> dict[str, np.ndarray]:
    """Full-set loss and accuracy of every variant: its own (noisy) training set and the
    sweep's held-out test split, in chunks of samples (bounded memory for image sets)."""
    x_train, x_test = _on_device(split, device)
    shape = split.shape.input_shape
    V = pos_to_row.shape[0]

    mask = torch.from_numpy(valid).to(device).float()
    chunk = eval_chunk(V, values, pos_to_row.shape[1])
    tr_loss, tr_hit = [], []
    for s in range(0, pos_to_row.shape[1], chunk):
        rows = pos_to_row[:, s : s + chunk]
        x = x_train.index_select(0, rows.reshape(-1)).view(V, rows.shape[1], *shape)
        loss, hit = net.per_sample(x, labels[:, s : s + chunk])
        tr_loss.append(loss)
        tr_hit.append(hit)
    y_test = torch.from_numpy(split.y_test).to(device)
    te_loss, te_hit = [], []
    chunk = eval_chunk(V, values, len(y_test))
    for s in range(0, len(y_test), chunk):
        x = x_test[s : s + chunk].view(-1, *shape)
        loss, hit = net.per_sample(x, y_test[s : s + chunk], shared=True)
        te_loss.append(loss)
        te_hit.append(hit)
    tr_loss, tr_hit = torch.cat(tr_loss, 1), torch.cat(tr_hit, 1)
    te_loss, te_hit = torch.cat(te_loss, 1), torch.cat(te_hit, 1)
    count = mask.sum(1)
    out = {
        "final_train_loss": (tr_loss * mask).sum(1) / count,
        "final_train_acc": (tr_hit * mask).sum(1) / count,
        "final_test_loss": te_loss.mean(1),
        "final_test_acc": te_hit.mean(1),
    }
    return {k: v.float().cpu().numpy() for k, v in out.items()}
