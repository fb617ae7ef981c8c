"""Expanding a spec into variants and packing variants into work units.

A work unit is what one actor trains in one go: variants with the same parameter shapes,
batch size and optimiser, trained as one batched model. The packing is deterministic, so
the same spec always gives the same units (which is what resume relies on).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from dataclasses import dataclass

from doodl.orchestrator.spec import SpecError, SweepSpec
from doodl.workers.config import VariantConfig, axes, spec_fields

# The axes in grid order (declared in ``doodl.workers.config``); the first two are the default
# phase-diagram axes later on.
AXES: tuple[str, ...] = tuple(axes())


@dataclass(frozen=True)
class WorkUnit:
    """A batch of variants that train together; ``unit_id`` hashes their run ids."""

    unit_id: str
    variants: tuple[VariantConfig, ...]

    @property
    def run_ids(self) -> list[str]:
        return [v.run_id for v in self.variants]


def axis_values(spec: SweepSpec) -> dict[str, list]:
    """The values of every grid axis, in ``AXES`` order."""
    return {name: getattr(getattr(spec, f.metadata["section"]), name) for name, f in axes().items()}


def swept_axes(spec: SweepSpec) -> list[str]:
    """Axes with more than one value, in ``AXES`` order."""
    return [k for k, vals in axis_values(spec).items() if len(vals) > 1]


def grid_size(spec: SweepSpec) -> int:
    """How many variants the spec's grid holds, computed without expanding it."""
    n_seeds = spec.seeds if isinstance(spec.seeds, int) else len(spec.seeds)
    return math.prod(len(vals) for vals in axis_values(spec).values()) * n_seeds


def expand(spec: SweepSpec) -> list[VariantConfig]:
    """Every variant of the grid (axes x seeds), in a deterministic order.

    A grid larger than ``resources.max_variants`` is refused before anything is built.
    """
    n = grid_size(spec)
    if n > spec.resources.max_variants:
        raise SpecError(f"{spec.name}: the grid has {n:,} variants, more than resources.max_variants "
                        f"({spec.resources.max_variants:,}); check the axes and seeds, or raise the limit")
    grid = axis_values(spec)
    fixed = {name: source(spec) for name, source in spec_fields().items()}  # declared in VariantConfig
    out = []
    for values in itertools.product(*grid.values(), spec.seed_list):
        point = dict(zip([*grid, "seed"], values))
        out.append(VariantConfig(**fixed, **point))
    return out


# ``variants_per_unit: auto``: a unit's working set (parameters and one batch's activations,
# per variant) is kept near this many float32 values (4 MB, about a core's L2 cache here):
# measured with bench/train_throughput.py, bigger units spill it and smaller ones pay the
# per-operation overhead more often (best sizes: 64-128 variants at width 8, 16-32 at 64).
UNIT_WORKING_SET = 1 << 20
AUTO_UNIT_RANGE = (8, 128)


def auto_unit_size(cfg: VariantConfig, memory_per_actor: int | None = None) -> int:
    """Variants per unit for ``cfg``'s shape class: the power of two that keeps the unit's
    working set near :data:`UNIT_WORKING_SET`, within :data:`AUTO_UNIT_RANGE`, halved
    while its actor would need more than ``memory_per_actor`` bytes
    (:mod:`doodl.orchestrator.memory`)."""
    from doodl.orchestrator.memory import fitting_size
    from doodl.workers.datasets import dataset_split
    from doodl.workers.models import activation_count, param_count

    shape = dataset_split(cfg).shape
    per_variant = param_count(cfg, shape) + cfg.batch_size * activation_count(cfg, shape)
    size = 2 ** max(0, int(math.log2(max(1, UNIT_WORKING_SET // per_variant))))
    size = min(max(size, AUTO_UNIT_RANGE[0]), AUTO_UNIT_RANGE[1])
    return size if memory_per_actor is None else fitting_size(cfg, size, memory_per_actor)


def pack(variants: list[VariantConfig], variants_per_unit: int | str, min_units: int = 1,
         memory_per_actor: int | None = None) -> list[WorkUnit]:
    """Pack variants into units of at most ``variants_per_unit`` sharing a ``shape_key``.

    ``"auto"`` sizes each shape class's units with :func:`auto_unit_size`, then splits
    them further (down to the range's smallest size) until the sweep has ``min_units``
    units, so that every actor gets work. Within a shape class the units are balanced
    (sizes differ by at most one), so no actor gets a straggler unit of one variant.
    """
    classes: dict[tuple, list[VariantConfig]] = {}
    for v in variants:
        classes.setdefault(v.shape_key, []).append(v)
    sizes = {k: auto_unit_size(m[0], memory_per_actor) if variants_per_unit == "auto" else int(variants_per_unit)
             for k, m in classes.items()}
    counts = {k: -(-len(m) // sizes[k]) for k, m in classes.items()}
    if variants_per_unit == "auto":
        while sum(counts.values()) < min_units:
            # split the class whose units are largest, while they hold more than the smallest size
            k = max(classes, key=lambda c: len(classes[c]) / counts[c])
            if len(classes[k]) / counts[k] <= min(AUTO_UNIT_RANGE[0], sizes[k]):
                break
            counts[k] += 1
    units = []
    for k, members in classes.items():
        n_units = counts[k]
        for i in range(n_units):
            chunk = tuple(members[i::n_units])
            digest = hashlib.sha256(",".join(v.run_id for v in chunk).encode()).hexdigest()[:16]
            units.append(WorkUnit(unit_id=digest, variants=chunk))
    return units


def plan_units(spec: SweepSpec, variants: list[VariantConfig]) -> list[WorkUnit]:
    """The units a new sweep of ``spec`` is packed into (what ``doodl sweep`` records and
    ``--dry-run`` reports): auto-sized units are split until every actor can get two
    (``num_actors``, or this machine's cores for a local run), and kept to what an actor of
    this machine may use (:func:`doodl.orchestrator.memory.actor_memory`)."""
    from doodl.orchestrator.memory import actor_memory

    res = spec.resources
    return pack(variants, res.variants_per_unit, min_units=2 * (res.num_actors or os.cpu_count() or 1),
                memory_per_actor=actor_memory(res))
