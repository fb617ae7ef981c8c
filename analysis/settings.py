"""The settings of each analysis: one pydantic model per analysis, the only place its
defaults are declared.

A spec's ``reduce:`` section is built from these models (one key per registered analysis,
:mod:`doodl.analysis.registry`), and each group task validates its settings with the same
model. Light on purpose: pydantic only, so the spec, ``doodl status`` and the MLflow view
read them without loading torch or CMGDB.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from doodl.workers.config import axes

PositiveInt = Annotated[int, Field(gt=0, strict=True)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]

# the coordinates a Morse graph can be computed in (doodl.analysis._coordinates); auto picks
# function space when full parameters are recorded, else late_pca
COORDINATE_KINDS = ("pca", "late_pca", "function", "dmd", "latent")
COORDINATES = ("auto", *COORDINATE_KINDS)


class AnalysisSettings(BaseModel):
    """Base of every analysis's settings: unknown keys refused, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # fields that place pictures but change no result: left out of the task's settings and
    # of the key that says what a stored result was computed with
    presentation: ClassVar[tuple[str, ...]] = ()

    def computation(self) -> dict:
        """The settings a group task computes with (JSON types), without presentation fields."""
        return self.model_dump(mode="json", exclude=set(self.presentation))

    @classmethod
    def from_record(cls, section: dict):
        """The settings a sweep recorded in its ``sweep.json`` (an analysis whose settings
        changed meaning migrates old records here)."""
        return cls.model_validate(section)


# reduce.morse keys of the Gaussian-process map that issue 21 replaced by the pair map, with
# the defaults sweeps recorded before it (their sweep.json holds the resolved section)
RETIRED_MORSE = {"far_field": 0.9, "max_pairs": 600, "uncertainty": 1.0}
_MORSE_DEFAULTS_BEFORE_21 = {"subdiv_min": 10, "subdiv_max": 16}


class MorseSettings(AnalysisSettings):
    """How a group's Morse graph is computed (``reduce.morse``; :mod:`doodl.analysis.dynamics`)."""

    coordinates: Literal[COORDINATES] = "auto"
    dims: Annotated[int, Field(ge=2, le=4, strict=True)] = 2
    tau: PositiveInt = 1  # in snapshots: the map is x_t -> x_{t + tau * compose * record.every steps}
    late_from: Annotated[float, Field(ge=0, lt=1)] = 0.5  # late_pca/function: PCA of snapshots from here on
    # 2**13 boxes (128 x 64 in 2-D): with 2**12 a held-out run's early state 0.15 from the
    # double well's separatrix was left undecided, with 2**14 a group took 2-4x longer
    # (BENCHMARKS.md)
    subdiv_min: Annotated[int, Field(ge=2, le=30, strict=True)] = 13
    subdiv_max: Annotated[int, Field(ge=2, le=40, strict=True)] = 17
    padding: Annotated[float, Field(ge=0, le=2)] = 0.1
    compose: Annotated[int, Field(ge=1, le=64, strict=True)] = 8  # pairs tau * compose snapshots apart
    folds: Annotated[int, Field(ge=2, le=100, strict=True)] = 8  # held-out validation: runs split in folds

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data):
        if isinstance(data, dict):
            for key in RETIRED_MORSE:
                if key in data:
                    raise ValueError(f"{key} is no longer a setting: the Morse graph's map now comes from the "
                                     "snapshot pairs, not a Gaussian process (README, 'Morse graphs'); remove it")
        return data

    @model_validator(mode="after")
    def _depths(self):
        if self.subdiv_max < self.subdiv_min:
            raise ValueError(f"subdiv_max ({self.subdiv_max}) must be at least subdiv_min ({self.subdiv_min})")
        return self

    @property
    def span(self) -> int:
        """Snapshots between the two states of a pair: the map is ``x_t -> x_{t + span}``.

        ``compose`` multiplies ``tau`` because the map is taken from pairs that far apart,
        never by iterating a one-step map: iterated, a small error at a slow state (0.01 a
        step) carried it several boxes (BENCHMARKS.md). A longer span makes the map contract
        more per step, so a settled end's box maps into itself rather than onto its
        neighbours."""
        return self.tau * self.compose

    @classmethod
    def from_record(cls, section: dict) -> MorseSettings:
        """The settings a sweep recorded in its ``sweep.json``. A section written before
        the pair map (it still holds the retired keys) was resolved from that method's
        defaults: keys it left at them take today's."""
        section = dict(section)
        if any(key in section for key in RETIRED_MORSE):
            for key in RETIRED_MORSE:
                section.pop(key, None)
            for key, old in _MORSE_DEFAULTS_BEFORE_21.items():
                if section.get(key) == old:
                    section.pop(key)
        return cls.model_validate(section)


class PhaseThresholds(AnalysisSettings):
    """Where the phase boundaries are drawn (Yang et al. drew them by eye; these are ours;
    :func:`doodl.analysis.taxonomy.classify_phase`).

    ``train_loss``: above it the group is "high loss" (phases I, II); ``mc_tolerance`` in
    percentage points: ``|mc|`` within it counts as "mc about 0"; ``cka``: at or above it
    the seeds are "similar" (IV-B), below it IV-A.
    """

    train_loss: PositiveFloat = 0.01
    mc_tolerance: NonNegFloat = 2.0
    cka: Annotated[float, Field(ge=0, le=1)] = 0.68


class TaxonomySettings(AnalysisSettings):
    """How each group's connectivity metrics and phase are computed (``reduce.taxonomy``;
    :mod:`doodl.analysis.taxonomy`)."""

    presentation: ClassVar[tuple[str, ...]] = ("axes",)

    hessian_batch: PositiveInt = 200  # fixed batch of each seed's training set for the Hessian
    power_iters: PositiveInt = 100
    power_tol: PositiveFloat = 1e-3
    trace_samples: PositiveInt = 100  # Hutchinson: at most this many Rademacher vectors
    trace_tol: PositiveFloat = 1e-3
    curve_steps: PositiveInt = 400  # SGD steps training each Bezier curve's middle point
    curve_lr: PositiveFloat = 0.01
    curve_momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    curve_batch: PositiveInt = 64
    mc_pairs: PositiveInt = 3  # pairs of seeds with a trained curve (CKA and L2 use all pairs)
    cka_probe: PositiveInt = 768  # mixup points of the training split
    seed: int = 0
    axes: Annotated[list[str], Field(min_length=2, max_length=2)] | None = None  # phase diagram axes
    thresholds: PhaseThresholds = PhaseThresholds()

    @field_validator("axes")
    @classmethod
    def _known_axes(cls, v):
        for name in v or []:
            if name not in axes():
                raise ValueError(f"unknown axis {name!r}; one of {', '.join(axes())}")
        return v


class KoopmanSettings(AnalysisSettings):
    """How each group's Koopman spectrum is estimated (``reduce.koopman``; :mod:`doodl.analysis.koopman`)."""

    delays: Annotated[int, Field(ge=0, le=50, strict=True)] = 4  # time delays of the observables
    rank: Annotated[int, Field(ge=1, le=200, strict=True)] = 8  # eigenvalues per spectrum (truncated DMD)
    snapshots: Literal["all", "early"] = "all"  # early: up to early_fraction of the run's recorded steps
    early_fraction: Annotated[float, Field(gt=0, le=1)] = 0.3
    seed: int = 0  # randomized SVD of large snapshot matrices


class NtkSettings(AnalysisSettings):
    """How each run's neural tangent kernel is followed (``reduce.ntk``; :mod:`doodl.analysis.ntk`)."""

    probe: Annotated[int, Field(ge=10, le=2000, strict=True)] = 100  # points of the training split
    # recorded steps per run with a kernel: thinned evenly in log time (dense early)
    max_kernels: Annotated[int, Field(ge=2, le=1000, strict=True)] = 12
    seed: int = 0  # which probe points


class EarlySettings(AnalysisSettings):
    """How each run's end is predicted from its start (``reduce.early``;
    :mod:`doodl.analysis.early_outcome`)."""

    # the fractions of training a prediction may look at
    fractions: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = (0.05, 0.1, 0.2)

    @field_validator("fractions")
    @classmethod
    def _sorted_and_distinct(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("fractions must be one or more distinct values")
        return tuple(sorted(value))
