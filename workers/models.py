"""Model families. A model is an ``nn.Module``; doodl trains it functionally.

The module defines the architecture and PyTorch's default initialisation; the batched
engine keeps one stacked copy of its parameters per variant and calls the module through
``torch.func.functional_call``, so a single architecture definition serves both the
batched engine and a plain per-model loop.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

MODEL_FAMILIES = ("mlp",)


class MLP(nn.Sequential):
    """``depth`` hidden layers of ``width`` units with ReLU, then a linear read-out."""

    def __init__(self, n_in: int, width: int, depth: int, n_out: int):
        layers: list[nn.Module] = []
        fan_in = n_in
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, n_out))
        super().__init__(*layers)


def build_model(family: str, *, n_in: int, n_out: int, width: int, depth: int) -> nn.Module:
    """Build a model of a family on the CPU with PyTorch's default initialisation."""
    if family != "mlp":
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(MODEL_FAMILIES)}")
    return MLP(n_in, width, depth, n_out)


def init_params(
    family: str, *, n_in: int, n_out: int, width: int, depth: int, seed: int
) -> dict[str, torch.Tensor]:
    """Initial parameters of one variant, a deterministic function of its seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_model(family, n_in=n_in, n_out=n_out, width=width, depth=depth)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def flatten_params(params: Mapping[str, torch.Tensor], batch_dims: int = 0) -> torch.Tensor:
    """Concatenate parameters (in module order) into one vector per leading batch index."""
    lead = next(iter(params.values())).shape[:batch_dims]
    return torch.cat([p.reshape(*lead, -1) for p in params.values()], dim=batch_dims)


def param_count(family: str, *, n_in: int, n_out: int, width: int, depth: int) -> int:
    """Number of scalar parameters of a model, without building it."""
    if family != "mlp":
        raise ValueError(f"unknown model family {family!r}")
    sizes = [n_in] + [width] * depth + [n_out]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
