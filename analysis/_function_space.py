"""Function-space coordinates of training trajectories.

Seeds that learn the same function end at different weights (hidden units can be
permuted, among other symmetries), so distances between parameter vectors overstate how
different two runs are. Here a snapshot is instead described by what the model *does*:
its softmax outputs on a fixed probe set of held-out points, flattened into one vector.
These coordinates are invariant to every symmetry that leaves the function unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, vmap

from doodl.workers.config import VariantConfig
from doodl.workers.datasets import SplitData, dataset_split
from doodl.workers.models import build_model, param_count

# Spawn key that separates the probe stream from every other use of the same seed.
_PROBE_STREAM = 0x9B0E
# Rough budget for one vmapped chunk (parameters + activations, float64).
_CHUNK_BYTES = 100_000_000


def _split(variant: dict) -> SplitData:
    """The sweep's train/test split of a variants.parquet row (cached by ``load_split``)."""
    cfg = VariantConfig.from_dict(variant)  # options hashable, in canonical order: load_split is cached
    return dataset_split(cfg)


def probe_inputs(variant: dict, n_probe: int = 200, seed: int = 0) -> np.ndarray:
    """The fixed probe set: ``n_probe`` points of the sweep's held-out test split.

    Points are chosen by a permutation seeded only by ``seed`` (never the variant's own
    seed), so every run and group of a sweep with the same data sees the same probe set.
    All of the test split is returned when it is smaller. Shape ``(n, n_features)``,
    float32, rows in test-split order.
    """
    x_test = _split(variant).x_test
    if n_probe < 1:
        raise ValueError(f"n_probe must be at least 1, got {n_probe}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _PROBE_STREAM]))
    # sorted so the probe order does not depend on the permutation, only its membership
    pick = np.sort(rng.permutation(len(x_test))[:n_probe])
    return np.ascontiguousarray(x_test[pick])


def _shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
    """Parameter shapes in module order, the order of ``doodl.workers.models.flatten_params``."""
    return {name: p.shape for name, p in model.named_parameters()}


def _unflatten(flat: torch.Tensor, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Split ``(B, P)`` flat parameters into a dict of ``(B, *shape)`` tensors."""
    sizes = [int(np.prod(s)) for s in shapes.values()]
    parts = torch.split(flat, sizes, dim=1)
    return {k: p.reshape(flat.shape[0], *s) for (k, s), p in zip(shapes.items(), parts)}


def output_features(variant: dict, thetas: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Softmax outputs of the variant's model on ``probe`` at each snapshot, flattened.

    ``thetas`` is ``(T, P)`` in ``flatten_params`` order. Returns ``(T, n_probe *
    n_classes)`` float64 (probe-major: the classes of probe point 0 first). Snapshots are
    evaluated with ``functional_call`` under ``vmap``, one batched call per chunk of
    snapshots sized to stay near 100 MB. Raises ``ValueError`` when the width of
    ``thetas`` is not the model's parameter count (e.g. a sweep that recorded a random
    projection, ``projection_dim`` > 0).
    """
    split = _split(variant)
    cfg = VariantConfig.from_dict(variant)
    family, width, depth = cfg.model, cfg.width, cfg.depth
    n_params = param_count(cfg, split.shape)
    thetas = np.asarray(thetas)
    if thetas.ndim != 2 or thetas.shape[1] != n_params:
        got = thetas.shape[1] if thetas.ndim == 2 else f"shape {thetas.shape}"
        proj = int(variant.get("projection_dim") or 0)
        hint = f" (recorded with projection_dim={proj})" if proj else ""
        raise ValueError(
            f"theta has {got} columns but the {family} model (width={width}, depth={depth}) has "
            f"{n_params} parameters{hint}: function-space coordinates need the full parameters"
        )
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[1] != split.n_features:
        raise ValueError(f"probe must be (n, {split.n_features}), got shape {probe.shape}")

    # float64 so the features match a plain forward pass to well below 1e-6
    model = build_model(cfg, split.shape).double()
    shapes = _shapes(model)
    x = torch.from_numpy(probe).double()

    def forward(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.softmax(functional_call(model, params, (x,)), dim=-1).reshape(-1)

    batched = vmap(forward)
    # per snapshot: its parameters plus every layer's activations on the probe set
    # (an MLP's pre- and post-ReLU, the logits and softmax; conv and attention maps hold
    # about an input's worth of values per channel), 8 bytes each
    per_layer = width * (split.n_features if cfg.model in ("cnn", "resnet") else 1)
    per_layer *= split.shape.input_shape[0] if split.vocab else 1
    acts = len(x) * (2 * per_layer * max(depth, 1) * (4 if cfg.model == "transformer" else 1) + 2 * split.n_classes)
    chunk = max(1, _CHUNK_BYTES // (8 * (n_params + acts)))
    out = np.empty((len(thetas), len(x) * split.n_classes), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(thetas), chunk):
            # converted per chunk, so a float32 theta of a long run is never copied whole
            flat = torch.from_numpy(np.asarray(thetas[start:start + chunk], dtype=np.float64))
            out[start:start + len(flat)] = batched(_unflatten(flat, shapes)).numpy()
    return out
