"""Building and initialising models of the families in ``doodl.workers.families``.

A model is an ``nn.Module``; doodl trains it functionally. The module defines the
architecture and PyTorch's default initialisation; the batched engine keeps one stacked
copy of its parameters per variant and calls the module through
``torch.func.functional_call``, so a single architecture definition serves the batched
engine, a plain per-model loop and the reduction.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from doodl.workers.config import VariantConfig
from doodl.workers.families import DataShape, family


def build_model(cfg: VariantConfig, shape: DataShape) -> nn.Module:
    """Build a variant's model on the CPU with PyTorch's default initialisation."""
    return family(cfg.model).build(cfg, shape)


def init_params(cfg: VariantConfig, shape: DataShape) -> dict[str, torch.Tensor]:
    """Initial parameters of one variant, a deterministic function of its seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        model = build_model(cfg, shape)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def flatten_params(params: Mapping[str, torch.Tensor], batch_dims: int = 0) -> torch.Tensor:
    """Concatenate parameters (in module order) into one vector per leading batch index."""
    lead = next(iter(params.values())).shape[:batch_dims]
    return torch.cat([p.reshape(*lead, -1) for p in params.values()], dim=batch_dims)


def param_count(cfg: VariantConfig, shape: DataShape) -> int:
    """Number of scalar parameters of a variant's model, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_model(cfg, shape)
    return sum(p.numel() for p in model.parameters())


def activation_count(cfg: VariantConfig, shape: DataShape) -> int:
    """Values the forward pass of one sample produces (the outputs of every leaf module),
    counted on the meta device (no memory): with :func:`param_count`, a variant's working
    set per training step."""
    with torch.device("meta"):
        model = build_model(cfg, shape)
        count = [0]

        def tally(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                count[0] += output[0].numel()  # per sample: the batch is 1

        leaves = [m for m in model.modules() if not list(m.children())]
        hooks = [m.register_forward_hook(tally) for m in leaves]
        dtype = torch.int64 if shape.vocab else torch.float32
        x = torch.zeros((1, *shape.input_shape), dtype=dtype)
        model(x)
        for h in hooks:
            h.remove()
    return count[0]


def saved_activation_bytes(cfg: VariantConfig, shape: DataShape, batch: int) -> int:
    """Bytes autograd keeps for the backward pass of one variant's training batch (the
    tensors its operations save: layer inputs, ReLU outputs, pooling indices), counted on
    the meta device (no memory) through :func:`torch.autograd.graph.saved_tensors_hooks`."""
    import torch.nn.functional as F

    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[id(t)] = t.numel() * t.element_size()  # a tensor saved by two operations counts once
        return t

    with torch.device("meta"):
        model = build_model(cfg, shape)
        dtype = torch.int64 if shape.vocab else torch.float32
        x = torch.zeros((batch, *shape.input_shape), dtype=dtype)
        y = torch.zeros(batch, dtype=torch.int64)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            F.cross_entropy(model(x), y)
    return sum(saved.values())
