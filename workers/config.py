"""The resolved configuration of one variant: the unit of identity in doodl.

The orchestrator expands a sweep spec into ``VariantConfig`` objects; the worker trains
them. ``run_id`` hashes every field (seed included), ``group_id`` every field but the
seed, so the same spec always yields the same ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

SEED_FIELD = "seed"


@dataclass(frozen=True)
class VariantConfig:
    """Everything that determines one variant's training run."""

    # data
    dataset: str
    test_fraction: float
    split_seed: int
    label_noise: float
    train_fraction: float
    # model
    model: str
    width: int
    depth: int
    # optimiser
    optimizer: str
    lr: float
    batch_size: int
    weight_decay: float
    steps: int
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    # recording
    record_every: int = 10
    projection_dim: int = 0  # 0: store the flattened parameters themselves
    projection_seed: int = 0
    seed: int = 0
    dataset_options: tuple[tuple[str, float | int | str], ...] = field(default=())

    def to_dict(self) -> dict:
        """Plain JSON-able dict (dataset options as a mapping)."""
        d = asdict(self)
        d["dataset_options"] = dict(self.dataset_options)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VariantConfig":
        """From :meth:`to_dict`'s form or a row of variants.parquet (which stores the
        dataset options as JSON text); unknown keys (ids, unit) are ignored."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        opts = d.get("dataset_options") or {}
        d["dataset_options"] = tuple(sorted((json.loads(opts) if isinstance(opts, str) else dict(opts)).items()))
        return cls(**d)

    @property
    def run_id(self) -> str:
        """Stable id of this variant: a hash of its whole resolved config."""
        return _digest(self.to_dict())

    @property
    def group_id(self) -> str:
        """Id of the configuration without the seed: all seeds of a config share it."""
        d = self.to_dict()
        d.pop(SEED_FIELD)
        return _digest(d)

    @property
    def optimizer_memory(self) -> float:
        """Training steps over which the optimiser's state remembers past gradients:
        ``1 / (1 - beta)`` for SGD's momentum or Adam's first moment, 0 for plain SGD."""
        beta = self.beta1 if self.optimizer == "adam" else self.momentum
        return 1.0 / (1.0 - beta) if beta else 0.0

    @property
    def shape_key(self) -> tuple:
        """Variants with equal keys have equal parameter shapes and batch size and can
        train together as one batched model."""
        return (
            self.dataset,
            self.dataset_options,
            self.test_fraction,
            self.split_seed,
            self.model,
            self.width,
            self.depth,
            self.optimizer,
            self.momentum,
            self.beta1,
            self.beta2,
            self.eps,
            self.batch_size,
            self.steps,
            self.record_every,
            self.projection_dim,
            self.projection_seed,
        )


def _digest(d: dict) -> str:
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
