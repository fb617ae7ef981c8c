"""The resolved configuration of one variant: the unit of identity in doodl, and the
registry of the grid's axes.

The orchestrator expands a sweep spec into ``VariantConfig`` objects; the worker trains
them. ``run_id`` hashes every field (seed included), ``group_id`` every field but the
seed, so the same spec always yields the same ids.

A field declared with :func:`axis` is a grid axis: the spec section named in it accepts a
value or a list of values for it, and expansion, the store's columns, MLflow params, run
names, ``doodl status``, audits and the reduction's group labels all read the axes from
here (:func:`axes`). Adding an axis is adding one field below; adding a model family is
one entry in ``doodl.workers.models.FAMILIES``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import Field as Check

SEED_FIELD = "seed"

# Fields added after the first release carry ``since=2``; at their default they are left
# out of the ids, so sweeps written before they existed keep their run ids.
_FIRST_RELEASE = 1


def axis(section: str, kind: Any, label: str, *, default: Any = MISSING, spec_default: Any = MISSING,
         since: int = _FIRST_RELEASE, doc: str = "") -> Any:
    """Declare a grid axis: a config field the spec section ``section`` may sweep.

    ``kind`` is the (pydantic-annotated) type of one value, ``label`` its short name in run
    names and group labels, ``spec_default`` the value a spec that omits it gets (the
    field's ``default`` when it has one).
    """
    meta = {"section": section, "kind": kind, "label": label, "since": since, "doc": doc,
            "spec_default": default if spec_default is MISSING else spec_default}
    return field(default=default, metadata=meta)


def _later(default: Any, since: int = 2) -> Any:
    """A non-axis field added after the first release (left out of ids at its default)."""
    return field(default=default, metadata={"since": since})


NoiseFraction = Annotated[float, Check(ge=0, lt=1)]
UnitFraction = Annotated[float, Check(gt=0, le=1)]
PositiveInt = Annotated[int, Check(gt=0, strict=True)]
PositiveFloat = Annotated[float, Check(gt=0)]
NonNegFloat = Annotated[float, Check(ge=0)]
NonNegInt = Annotated[int, Check(ge=0, strict=True)]


@dataclass(frozen=True)
class VariantConfig:
    """Everything that determines one variant's training run."""

    # data
    dataset: str
    test_fraction: float
    split_seed: int
    label_noise: float = axis("data", NoiseFraction, "noise", spec_default=0.0, doc="fraction of training labels flipped")
    train_fraction: float = axis("data", UnitFraction, "frac", spec_default=1.0, doc="fraction of the training split kept")
    # model
    model: str = field(default=MISSING)
    width: int = axis("model", PositiveInt, "w", spec_default=32, doc="width factor (units, channels or embedding size)")
    depth: int = axis("model", NonNegInt, "d", spec_default=2, doc="layers, conv blocks or residual stages")
    # optimiser
    optimizer: str = field(default=MISSING)
    lr: float = axis("optimizer", PositiveFloat, "lr", spec_default=0.05, doc="base learning rate")
    batch_size: int = axis("optimizer", PositiveInt, "bs", spec_default=32, doc="minibatch size")
    weight_decay: float = axis("optimizer", NonNegFloat, "wd", spec_default=0.0, doc="L2 (sgd, adam) or decoupled (adamw) decay")
    steps: int = field(default=MISSING)
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
    # --- added with model families and data-quality axes ---------------------------
    dataset_path: str = _later("")  # directory or URI of a file-based data set (mnist, cifar10, ...)
    label_noise_kind: str = axis("data", Literal["symmetric", "pair"], "noisekind", default="symmetric", since=2,
                                 doc="symmetric: to any other class; pair: class c to c+1 (class-conditional)")
    input_noise: float = axis("data", NonNegFloat, "inoise", default=0.0, since=2,
                              doc="std of Gaussian noise added to each input each time it is drawn")
    class_imbalance: float = axis("data", UnitFraction, "imb", default=1.0, since=2,
                                  doc="smallest to largest class size (long-tailed); 1 is balanced")
    augment: bool = axis("data", bool, "aug", default=False, since=2,
                         doc="images: random crop (zero padding 4) and horizontal flip per draw")
    heads: int = axis("model", PositiveInt, "heads", default=4, since=2, doc="attention heads (transformer)")
    norm: str = axis("model", Literal["group", "none"], "norm", default="group", since=2,
                     doc="normalisation of the resnet family")
    schedule: str = axis("optimizer", Literal["constant", "step", "cosine"], "sched", default="constant", since=2,
                         doc="learning-rate schedule after the warm-up")
    warmup: int = axis("optimizer", NonNegInt, "warmup", default=0, since=2,
                       doc="steps of linear learning-rate warm-up")
    record_dtype: str = _later("float32")  # float16: snapshots stored at half the bytes
    milestones: tuple[float, ...] = _later((0.5, 0.75))  # step schedule: fractions of the steps
    gamma: float = _later(0.1)  # step schedule: factor at each milestone

    def to_dict(self) -> dict:
        """Plain JSON-able dict (dataset options as a mapping)."""
        d = asdict(self)
        d["dataset_options"] = dict(self.dataset_options)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VariantConfig:
        """From :meth:`to_dict`'s form or a row of variants.parquet (which stores the
        dataset options as JSON text); unknown keys (ids, unit) are ignored, fields a
        older store lacks take their defaults."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known and v is not None}
        opts = d.get("dataset_options") or {}
        d["dataset_options"] = tuple(sorted((json.loads(opts) if isinstance(opts, str) else dict(opts)).items()))
        if "milestones" in d:
            d["milestones"] = tuple(float(m) for m in d["milestones"])
        return cls(**d)

    @property
    def run_id(self) -> str:
        """Stable id of this variant: a hash of its whole resolved config."""
        return _digest(_identity(self))

    @property
    def group_id(self) -> str:
        """Id of the configuration without the seed: all seeds of a config share it."""
        d = _identity(self)
        d.pop(SEED_FIELD)
        return _digest(d)

    @property
    def optimizer_memory(self) -> float:
        """Training steps over which the optimiser's state remembers past gradients:
        ``1 / (1 - beta)`` for SGD's momentum or Adam's first moment, 0 for plain SGD."""
        beta = self.beta1 if self.optimizer in ("adam", "adamw") else self.momentum
        return 1.0 / (1.0 - beta) if beta else 0.0

    @property
    def shape_key(self) -> tuple:
        """Variants with equal keys have equal parameter shapes, batch size, data set and
        schedule length and can train together as one batched model. Per-variant values
        (lr, weight decay, schedule, data quality, seed) are free to differ."""
        shared = {f.name for f in fields(self)} - _PER_VARIANT
        return tuple(_hashable(getattr(self, name)) for name in sorted(shared))


# Fields that may differ between the variants of one batched unit.
_PER_VARIANT = frozenset({
    "seed", "lr", "weight_decay", "label_noise", "train_fraction", "label_noise_kind", "input_noise",
    "class_imbalance", "augment", "schedule", "warmup", "milestones", "gamma",
})


# Grid order: model axes, then data, then optimiser (the first two are the default phase
# diagram axes); within a section, declaration order.
SECTIONS = ("model", "data", "optimizer")


def axes() -> dict[str, Field]:
    """The grid's axes in grid order: field name -> dataclass field (its ``metadata`` holds
    ``section``, ``kind``, ``label``, ``since`` and ``doc``)."""
    declared = [f for f in fields(VariantConfig) if "section" in f.metadata]
    return {f.name: f for f in sorted(declared, key=lambda f: SECTIONS.index(f.metadata["section"]))}


def shown_axes(configs: Iterable[Mapping]) -> list[str]:
    """The axes worth a column for these configs (dicts or variants.parquet rows), in grid
    order: the first release's axes always, a later one where some config leaves its default."""
    configs = list(configs)
    out = []
    for name, f in axes().items():
        if f.metadata["since"] == _FIRST_RELEASE or any(c.get(name, f.default) != f.default for c in configs):
            out.append(name)
    return out


def later_labels(cfg: Mapping) -> list[tuple[str, Any]]:
    """``(label, value)`` of the axes added after the first release that this config sets
    away from their defaults (for run names and group labels, which keep their first form)."""
    return [(f.metadata["label"], cfg[name]) for name, f in axes().items()
            if f.metadata["since"] > _FIRST_RELEASE and cfg.get(name, f.default) != f.default]


def _identity(cfg: VariantConfig) -> dict:
    d = cfg.to_dict()
    for f in fields(cfg):
        if f.metadata.get("since", _FIRST_RELEASE) > _FIRST_RELEASE and getattr(cfg, f.name) == f.default:
            d.pop(f.name)
    return d


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _digest(d: dict) -> str:
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def group_label(cfg: dict) -> str:
    """A readable name for a group (its config without the seed)."""
    later = "".join(f", {label} {value:g}" if isinstance(value, float) else f", {label} {value}"
                    for label, value in later_labels(cfg))
    return (f"width {cfg['width']}, depth {cfg['depth']}, noise {cfg['label_noise']:g}, "
            f"frac {cfg['train_fraction']:g}, lr {cfg['lr']:g}, batch {cfg['batch_size']}{later}")
