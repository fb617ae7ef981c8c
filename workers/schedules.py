"""Learning-rate schedules, computed by ``torch.optim.lr_scheduler`` itself.

A variant's schedule is a table of the learning rate used at each optimiser step. It is
made by stepping PyTorch's own schedulers on a one-parameter optimiser (cheap: no model),
so the batched engine follows ``torch.optim`` + ``torch.optim.lr_scheduler`` exactly:

- ``constant``: the base rate throughout;
- ``step``: multiplied by ``gamma`` at each milestone (fractions of the steps after the
  warm-up), as Yang et al.'s step decay (``MultiStepLR``);
- ``cosine``: cosine annealing to 0 over the steps after the warm-up (``CosineAnnealingLR``);
- ``warmup`` > 0 steps first: linear warm-up from ``1/warmup`` of the rate (``LinearLR``),
  then the schedule (``SequentialLR``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import get_args

import numpy as np
import torch
from torch.optim import lr_scheduler

from doodl.workers.config import VariantConfig, axes

SCHEDULES: tuple[str, ...] = get_args(axes()["schedule"].metadata["kind"])


def is_constant(cfg: VariantConfig) -> bool:
    """True when the rate never changes (the engine then skips the per-step table)."""
    return cfg.schedule == "constant" and cfg.warmup == 0


def lr_table(cfg: VariantConfig) -> np.ndarray:
    """The learning rate of each of the ``cfg.steps`` optimiser steps (float64)."""
    return _table(cfg.lr, cfg.schedule, cfg.warmup, tuple(cfg.milestones), cfg.gamma, cfg.steps)


def make_scheduler(optimizer: torch.optim.Optimizer, *, schedule: str, warmup: int, milestones, gamma: float,
                   steps: int) -> lr_scheduler.LRScheduler:
    """The ``torch.optim.lr_scheduler`` object for a schedule (step it after each step)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; one of {', '.join(SCHEDULES)}")
    after = max(1, steps - warmup)
    if schedule == "step":
        marks = sorted({max(1, int(round(m * after))) for m in milestones})
        main = lr_scheduler.MultiStepLR(optimizer, milestones=marks, gamma=gamma)
    elif schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=after)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warmup:
        return main
    warm = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])


@lru_cache(maxsize=256)
def _table(lr: float, schedule: str, warmup: int, milestones: tuple, gamma: float, steps: int) -> np.ndarray:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make_scheduler(opt, schedule=schedule, warmup=warmup, milestones=milestones, gamma=gamma, steps=steps)
    out = np.empty(steps)
    for t in range(steps):
        out[t] = opt.param_groups[0]["lr"]
        opt.step()  # no gradient: a no-op that keeps the scheduler's step-order check quiet
        sched.step()
    out.setflags(write=False)
    return out
