"""The resolved configuration of one variant: the unit of identity in doodl, and the
registry of the grid's axes.

The orchestrator expands a sweep spec into ``VariantConfig`` objects; the worker trains
them. ``run_id`` hashes every field (seed included), ``group_id`` every field but the
seed, so the same spec always yields the same ids.

This class is the registry of configuration fields: each field says once where its value
comes from and what it is shown as. A field declared with :func:`axis` is a grid axis: the
spec section named in it accepts a value or a list of values for it, and expansion, the
store's columns, MLflow params, run names, ``doodl status``, audits and the reduction's
group labels all read the axes from here (:func:`axes`). Every other field is declared with
:func:`setting`: how a validated spec gives its value (``source``), whether it is an MLflow
param (:func:`param_fields`) and whether audits match groups on it (:func:`match_fields`).
Adding a field is one line below; adding a model family is one entry in
``doodl.workers.models.FAMILIES``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import Field as Check

SEED_FIELD = "seed"

# Fields added after the first release carry ``since=2``; at their default they are left
# out of the ids, so sweeps written before they existed keep their run ids.
_FIRST_RELEASE = 1


def axis(section: str, kind: Any, label: str, *, default: Any = MISSING, spec_default: Any = MISSING,
         since: int = _FIRST_RELEASE, doc: str = "", group_label: str | None = None) -> Any:
    """Declare a grid axis: a config field the spec section ``section`` may sweep.

    ``kind`` is the (pydantic-annotated) type of one value, ``label`` its short name in run
    names, ``spec_default`` the value a spec that omits it gets (the field's ``default``
    when it has one), ``group_label`` its name in :func:`group_label` (the first release's
    six; later axes show there by ``label`` when set away from their default). An axis is
    always an MLflow param and always matched by audits.
    """
    meta = {"section": section, "kind": kind, "label": label, "since": since, "doc": doc,
            "spec_default": default if spec_default is MISSING else spec_default, "group_label": group_label,
            "param": True, "match": True}
    return field(default=default, metadata=meta)


def setting(source: Callable[[Any], Any] | None, *, default: Any = MISSING, param: bool = False,
            match: bool = False, since: int = _FIRST_RELEASE) -> Any:
    """Declare a config field that is not a grid axis.

    ``source`` reads its value from a validated spec (``None``: set by expansion itself,
    the seed); ``param``: shown as an MLflow param; ``match``: two groups of an audit and
    its baseline are the same setup only if they agree on it. A field added after the
    first release carries ``since=2``: at its default it is left out of the ids.
    """
    return field(default=default, metadata={"source": source, "param": param, "match": match, "since": since})


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
    dataset: str = setting(lambda s: s.dataset.name, param=True, match=True)
    test_fraction: float = setting(lambda s: s.dataset.test_fraction, param=True, match=True)
    split_seed: int = setting(lambda s: s.dataset.split_seed, param=True, match=True)
    label_noise: float = axis("data", NoiseFraction, "noise", spec_default=0.0, doc="fraction of training labels flipped",
                              group_label="noise")
    train_fraction: float = axis("data", UnitFraction, "frac", spec_default=1.0, doc="fraction of the training split kept",
                                 group_label="frac")
    # model
    model: str = setting(lambda s: s.model.family, param=True, match=True)
    width: int = axis("model", PositiveInt, "w", spec_default=32, doc="width factor (units, channels or embedding size)",
                      group_label="width")
    depth: int = axis("model", NonNegInt, "d", spec_default=2, doc="layers, conv blocks or residual stages",
                      group_label="depth")
    # optimiser
    optimizer: str = setting(lambda s: s.optimizer.name, param=True, match=True)
    lr: float = axis("optimizer", PositiveFloat, "lr", spec_default=0.05, doc="base learning rate", group_label="lr")
    batch_size: int = axis("optimizer", PositiveInt, "bs", spec_default=32, doc="minibatch size", group_label="batch")
    weight_decay: float = axis("optimizer", NonNegFloat, "wd", spec_default=0.0, doc="L2 (sgd, adam) or decoupled (adamw) decay")
    steps: int = setting(lambda s: s.optimizer.steps, param=True, match=True)
    momentum: float = setting(lambda s: s.optimizer.momentum, default=0.9, param=True, match=True)
    beta1: float = setting(lambda s: s.optimizer.betas[0], default=0.9)
    beta2: float = setting(lambda s: s.optimizer.betas[1], default=0.999)
    eps: float = setting(lambda s: s.optimizer.eps, default=1e-8)
    # recording
    record_every: int = setting(lambda s: s.record.every, default=10, param=True)
    # 0: store the flattened parameters themselves
    projection_dim: int = setting(lambda s: s.record.projection.dim if s.record.projection else 0, default=0,
                                  param=True)
    projection_seed: int = setting(lambda s: s.record.projection.seed if s.record.projection else 0, default=0)
    seed: int = setting(None, default=0, param=True)  # set by expansion: one variant per seed
    dataset_options: tuple[tuple[str, float | int | str], ...] = setting(
        lambda s: tuple(sorted(s.dataset.options.items())), default=())
    # --- added with model families and data-quality axes ---------------------------
    # directory or URI of a file-based data set (mnist, cifar10, ...)
    dataset_path: str = setting(lambda s: s.dataset.path, default="", match=True, since=2)
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
    # float16: snapshots stored at half the bytes
    record_dtype: str = setting(lambda s: s.record.dtype, default="float32", since=2)
    # step schedule: fractions of the steps, and the factor at each milestone
    milestones: tuple[float, ...] = setting(lambda s: tuple(s.optimizer.milestones), default=(0.5, 0.75), since=2)
    gamma: float = setting(lambda s: s.optimizer.gamma, default=0.1, since=2)

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


def default_of(name: str) -> Any:
    """A config field's default: the value a spec that omits it gets."""
    return VariantConfig.__dataclass_fields__[name].default


def spec_fields() -> dict[str, Callable[[Any], Any]]:
    """Every field that is the same for all variants of a spec: name -> how the validated
    spec gives its value (the axes and the seed are the grid's)."""
    return {f.name: f.metadata["source"] for f in fields(VariantConfig) if f.metadata.get("source")}


def param_fields() -> tuple[str, ...]:
    """The fields shown as MLflow params (the rest are in variants.parquet): the settings
    marked ``param`` in declaration order, then every grid axis in grid order."""
    return (*(f.name for f in fields(VariantConfig) if "section" not in f.metadata and f.metadata.get("param")),
            *axes())


def match_fields() -> tuple[str, ...]:
    """What makes two groups the same setup for an audit: the settings marked ``match``
    (data, family, training length), then every grid axis."""
    return (*(f.name for f in fields(VariantConfig) if "section" not in f.metadata and f.metadata.get("match")),
            *axes())


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
    """A readable name for a group (its config without the seed): the axes that declare a
    ``group_label``, in grid order, then the later axes set away from their defaults."""
    named = [(f.metadata["group_label"], cfg[name]) for name, f in axes().items() if f.metadata["group_label"]]
    return ", ".join(f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}"
                     for label, value in [*named, *later_labels(cfg)])
