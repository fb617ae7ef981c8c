"""The sweep spec: a validated YAML document. Every list-valued axis multiplies the grid.

Example (``examples/quickstart.yaml``)::

    name: quickstart
    dataset: {name: digits, test_fraction: 0.2, split_seed: 0}
    data: {label_noise: [0.0, 0.2], train_fraction: 1.0}
    model: {family: mlp, width: [16, 32], depth: 2}
    optimizer: {name: sgd, lr: 0.05, momentum: 0.9, batch_size: [32, 64], steps: 200}
    seeds: 3
    record: {every: 10}
    resources: {variants_per_unit: 12, num_actors: 2}

Validation refuses a bad spec before anything is written, with one line naming the
field path (``optimizer.batch_size[1]``) and what is wrong: see :class:`SpecError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from doodl.analysis.settings import NonNegFloat, PositiveFloat, PositiveInt
from doodl.workers.config import axes, default_of
from doodl.workers.datasets import BUILTIN_DATASETS, FILE_DATASETS, load_split
from doodl.workers.families import FAMILIES

SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class SpecError(ValueError):
    """A spec that cannot be run; ``str()`` is the one line shown to the user."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NoiseFraction = Annotated[float, Field(ge=0, lt=1)]
TrainFraction = Annotated[float, Field(gt=0, le=1)]


def _axis(item_type):
    """A non-empty list of values (a scalar in YAML is read as a one-value axis)."""
    return Annotated[list[item_type], Field(min_length=1)]


class _AxisModel(_Strict):
    """A spec section whose ``axes`` fields accept a scalar or a list."""

    axes: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _listify(cls, data):
        if isinstance(data, dict):
            data = {k: ([v] if k in cls.axes and not isinstance(v, list) else v) for k, v in data.items()}
        return data


class DatasetSpec(_Strict):
    """The base data set and the sweep-wide held-out split."""

    name: str = Field(description=f"one of {', '.join(BUILTIN_DATASETS + tuple(FILE_DATASETS))}, "
                                  "or a path to an .npz with x and y")
    # directory (or pyarrow.fs URI) of a file-based set: mnist, fashion_mnist (idx files),
    # cifar10, cifar100 (binary version); these keep their own test set (test_fraction unused)
    path: str = ""
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    split_seed: int = 0
    options: dict[str, int | float | str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v in BUILTIN_DATASETS or v in FILE_DATASETS:
            return v
        if not v.endswith(".npz"):
            raise ValueError(f"unknown data set {v!r}; use one of "
                             f"{', '.join(BUILTIN_DATASETS + tuple(FILE_DATASETS))} or an .npz path")
        if not Path(v).is_file():
            raise ValueError(f"data file not found: {v}")
        return str(Path(v).resolve())

    @model_validator(mode="after")
    def _path(self):
        if self.name in FILE_DATASETS and not self.path:
            raise ValueError(f"data set {self.name} is read from files: set dataset.path to their directory")
        if self.path and self.name not in FILE_DATASETS:
            raise ValueError(f"dataset.path is only read for {', '.join(FILE_DATASETS)}")
        if self.path and "://" not in self.path:
            if not Path(self.path).is_dir():
                raise ValueError(f"dataset.path: directory not found: {self.path}")
            object.__setattr__(self, "path", str(Path(self.path).resolve()))
        return self


def _axis_fields(section: str) -> dict:
    """The pydantic fields of a spec section's grid axes, from the registry in
    ``doodl.workers.config``: each takes a value or a non-empty list of values."""
    out = {}
    for name, f in axes().items():
        if f.metadata["section"] == section:
            default = f.metadata["spec_default"]
            out[name] = (_axis(f.metadata["kind"]), Field(default=[default], description=f.metadata["doc"]))
    return out


class _DataBase(_AxisModel):
    """Data-quality axes, applied per variant from its seed."""


class _ModelBase(_AxisModel):
    """The model family and its size axes (see ``doodl.workers.models.FAMILIES``)."""

    family: Literal[tuple(FAMILIES)] = "mlp"

    @model_validator(mode="after")
    def _fits_family(self):
        fam = FAMILIES[self.family]
        lo, hi = fam.depths
        for i, d in enumerate(self.depth):
            if not lo <= d <= hi:
                raise ValueError(f"depth[{i}]: {d} is outside {lo}..{hi} for family {self.family}")
        for name, f in axes().items():
            if f.metadata["section"] != "model" or name in ("width", "depth") or name in fam.uses:
                continue
            if getattr(self, name) != [f.default]:
                raise ValueError(f"{name}: family {self.family} does not use it")
        if self.family == "transformer":
            for w in self.width:
                for h in self.heads:
                    if w % h:
                        raise ValueError(f"width {w} is not divisible by heads {h}")
        return self


class _OptimizerBase(_AxisModel):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    steps: PositiveInt = 200
    momentum: Annotated[float, Field(ge=0, lt=1)] = default_of("momentum")
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        default_of("beta1"), default_of("beta2"))
    eps: PositiveFloat = default_of("eps")
    # step schedule: decay by gamma at these fractions of the steps after the warm-up
    milestones: Annotated[list[Annotated[float, Field(gt=0, lt=1)]], Field(min_length=1)] = list(default_of("milestones"))
    gamma: Annotated[float, Field(gt=0, le=1)] = default_of("gamma")


def _section(name: str, base: type[_AxisModel]) -> type[_AxisModel]:
    fields = _axis_fields(name)
    model = create_model(f"{name.title()}Spec", __base__=base, __doc__=base.__doc__, **fields)
    model.axes = tuple(fields)
    return model


DataSpec = _section("data", _DataBase)
ModelSpec = _section("model", _ModelBase)
OptimizerSpec = _section("optimizer", _OptimizerBase)


class ProjectionSpec(_Strict):
    dim: PositiveInt
    seed: int = 0


class RecordSpec(_Strict):
    every: PositiveInt = default_of("record_every")
    projection: ProjectionSpec | None = None
    # float16 halves the snapshots' bytes; the stored values read back exactly (as float32)
    dtype: Literal["float32", "float16"] = default_of("record_dtype")


class ResourcesSpec(_Strict):
    # auto: sized from each model's parameters and activations (doodl.orchestrator.expand.auto_unit_size)
    variants_per_unit: PositiveInt | Literal["auto"] = "auto"
    num_actors: PositiveInt | None = None  # default: as many as the cluster has CPUs for
    cpus_per_actor: PositiveFloat = 1.0
    gpus_per_actor: NonNegFloat = 0.0
    max_retries: Annotated[int, Field(ge=0)] = 2
    # seconds an actor may wait to be placed (an autoscaler starting a node) before it is given up
    placement_timeout: PositiveFloat = 600.0
    # a guard against typos such as ``seeds: 100000000``: the grid is refused before it is expanded
    max_variants: PositiveInt = 100_000


def reduce_spec_model() -> type[BaseModel]:
    """The ``reduce`` section: one key per registered analysis (:mod:`doodl.analysis.registry`),
    each validated by that analysis's settings model, the only place its defaults live."""
    from doodl.analysis.registry import REGISTRY

    fields = {name: (a.settings, Field(default_factory=a.settings)) for name, a in REGISTRY.items()}
    return create_model("ReduceSpec", __base__=_Strict, __doc__="Settings of the reduction stage; they change "
                        "no training result.", **fields)


ReduceSpec = reduce_spec_model()


class EarlyStopSpec(_Strict):
    """Landscape-aware early stopping (:mod:`doodl.workers.early_stop`): at ``at`` of training,
    a run whose final test accuracy, predicted from its early features by a ridge regression
    fitted on the ``predictor`` sweep, falls below that sweep's ``1 - keep`` quantile of
    predicted accuracies stops there (status ``stopped``)."""

    at: Annotated[float, Field(gt=0, lt=1)] = 0.1
    keep: Annotated[float, Field(gt=0, le=1)] = 0.5
    # a reduced sweep in the same store (with the early analysis at this ``at``); also
    # ``doodl sweep --predictor SWEEP``
    predictor: str = ""


class ToleranceSpec(_Strict):
    """How far a metric may move between an audit and its baseline before it is drift.

    ``train_loss``, ``test_acc`` and ``mc`` (percentage points) are absolute; the Hessian
    figures are relative (0.5: a change by half of the baseline's value)."""

    train_loss: NonNegFloat = 0.05
    test_acc: NonNegFloat = 0.03
    hessian_top: NonNegFloat = 0.5
    hessian_trace: NonNegFloat = 0.5
    mc: NonNegFloat = 5.0


class AuditSpec(_Strict):
    """What ``doodl audit`` counts as drift."""

    tolerances: ToleranceSpec = ToleranceSpec()
    phase_change: bool = True  # a changed phase is drift
    attractor_change: bool = True  # a changed number of attractors is drift


class SweepSpec(_Strict):
    """A whole sweep: what to train, how to record it, and with what resources."""

    name: str
    dataset: DatasetSpec
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    seeds: PositiveInt | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = 1
    record: RecordSpec = RecordSpec()
    resources: ResourcesSpec = ResourcesSpec()
    early_stop: EarlyStopSpec | None = None  # off unless given
    reduce: ReduceSpec = ReduceSpec()
    audit: AuditSpec = AuditSpec()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not SWEEP_NAME.match(v):
            raise ValueError("must be 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")
        return v

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v):
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def with_predictor(spec: SweepSpec, sweep_id: str) -> SweepSpec:
    """``spec`` with early stopping fitted on ``sweep_id`` (``doodl sweep --predictor``)."""
    if not SWEEP_NAME.match(sweep_id):
        raise SpecError(f"--predictor: {sweep_id!r} is not a sweep id")
    early = (spec.early_stop or EarlyStopSpec()).model_copy(update={"predictor": sweep_id})
    return spec.model_copy(update={"early_stop": early})


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or str(part).startswith(("function-", "constrained-")):
            continue  # pydantic's union-branch labels (``int``, ``list[int]``) mean nothing to a user
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required field is missing"
    return f"{_format_loc(first['loc'])}: {msg}"


def parse_spec(data: object, source: str = "spec") -> SweepSpec:
    """Validate a spec given as a mapping; raise :class:`SpecError` with one line."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of fields at the top level")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{source}: {_first_error(err)}") from None
    _check_against_data(spec, source)
    return spec


def _check_against_data(spec: SweepSpec, source: str) -> None:
    """Checks that need the data set: every batch must fit in every training set."""
    try:
        split = load_split(spec.dataset.name, spec.dataset.test_fraction, spec.dataset.split_seed,
                           tuple(sorted(spec.dataset.options.items())), spec.dataset.path)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        where = "dataset.path" if spec.dataset.path else "dataset.name"
        raise SpecError(f"{source}: {where}: cannot load data set ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    kind = split.shape.kind
    if kind not in FAMILIES[spec.model.family].inputs:
        raise SpecError(f"{source}: model.family: {spec.model.family} does not take {kind} "
                        f"({spec.dataset.name}); it takes {', '.join(FAMILIES[spec.model.family].inputs)}")
    if kind != "images" and True in spec.data.augment:
        raise SpecError(f"{source}: data.augment: augmentation needs image data; {spec.dataset.name} is {kind}")
    if kind == "tokens" and any(spec.data.input_noise):
        raise SpecError(f"{source}: data.input_noise: token ids cannot take Gaussian noise")
    if split.n_classes < 2:
        raise SpecError(f"{source}: dataset.name: needs at least 2 classes, found {split.n_classes}")
    n_train = len(split.y_train)
    smallest = max(1, int(round(min(spec.data.train_fraction) * n_train)))
    for i, bs in enumerate(spec.optimizer.batch_size):
        if bs > smallest:
            raise SpecError(
                f"{source}: optimizer.batch_size[{i}]: {bs} is larger than the smallest training set "
                f"({smallest} samples at train_fraction {min(spec.data.train_fraction)})"
            )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML spec file (safe loader only)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}") from None
    return parse_spec(data, str(path))
