"""``doodl sweep SPEC --dry-run``: what a sweep would train and what it would cost, without
training it.

Nothing is written: no store directory, no MLflow database, no Ray. The store is only read,
to refuse what ``doodl sweep`` refuses (the same name recorded with another spec) and to
leave out units it already holds. The figures:

- variants, groups and units as ``doodl sweep`` packs them (:func:`doodl.orchestrator.expand.plan_units`,
  or the units the store records), and the parameters of each distinct model;
- the store's size, estimated from the shard format (:mod:`doodl.workers.shards`): per run, its
  snapshots x recorded values (parameters, or the projection) x the record dtype's bytes, one
  trajectory row per step, and the final parameters. The values alone: Parquet adds a few kB
  a file (schema, statistics, run ids; 3 files a unit), which is most of a tiny model's
  shards, and compresses the rest a little (parameters are close to random bits);
- the memory an actor needs for the largest unit of each shape class
  (:mod:`doodl.orchestrator.memory`), refused (exit 2) before anything is trained when it is
  more than this machine has;
- the training time on this machine, from a short calibration: one unit of each shape class
  (units of one class train alike) is trained in this process for a few steps, on one torch
  thread as an actor trains, timed at two step counts (their difference is the time a step
  costs, the rest the unit's fixed cost); the sweep's units are then spread over the actors
  this machine places. Classes the time budget leaves out are scaled from the calibrated
  ones by parameters x batch size. An estimate: another load on the machine changes it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from doodl.orchestrator.expand import WorkUnit, expand, plan_units
from doodl.orchestrator.memory import check_fits, largest_units, local_memory
from doodl.orchestrator.spec import SweepSpec
from doodl.orchestrator.store import UnitState, sweep_store_for
from doodl.workers import shards
from doodl.workers.config import VariantConfig
from doodl.workers.families import family
from doodl.workers.timestamps import human_duration
from doodl.workers.unit_memory import UnitMemory, human_bytes

CALIBRATION_S = 4.0  # time budget of the calibration (the command answers in about this plus imports)
WARM_STEPS, FIRST_STEPS = 1, 3  # a first call pays one-time costs (data, kernels); then two timed calls


@dataclass(frozen=True)
class Model:
    """One distinct architecture of the sweep."""

    label: str
    params: int
    variants: int


@dataclass(frozen=True)
class Calibration:
    """What one shape class's unit measured: ``variants`` trained ``steps`` steps at a time."""

    variants: int
    steps: int
    step_s: float  # one step of the whole unit
    fixed_s: float  # per unit: data, model, final evaluation

    @property
    def model_steps_per_s(self) -> float:
        return self.variants / self.step_s


@dataclass
class SweepPlan:
    """What ``doodl sweep`` would do with a spec."""

    sweep_id: str
    n_variants: int
    n_groups: int
    n_units: int
    units_done: int  # already committed in the store
    models: list[Model]
    store_bytes: int
    per_run: str  # how store_bytes was counted, for the largest model
    n_actors: int
    calibrations: list[Calibration]
    n_classes: int  # shape classes with units to train
    memory: list[UnitMemory]  # the largest unit of each shape class, largest first
    node_memory: int  # this machine's
    train_seconds: float | None  # None: nothing to train, or no actor can be placed here


def plan_sweep(spec: SweepSpec, store_uri: str, *, new_sweep: bool = False,
               budget_s: float = CALIBRATION_S) -> SweepPlan:
    """Validate and plan ``spec``'s sweep (see the module docstring); writes nothing."""
    variants = expand(spec)
    store = sweep_store_for(spec, store_uri, new_sweep=new_sweep)
    if store.exists():  # a rerun trains what the store lacks, in the units it records
        units = store.recorded_units(variants)
        states = store.unit_states([u.unit_id for u in units])
        todo = [u for u in units if states[u.unit_id].state != UnitState.COMMITTED]
    else:
        units = todo = plan_units(spec, variants)
    memory = sorted(largest_units(todo or units), key=lambda m: -m.actor_bytes)
    node_memory = local_memory()
    check_fits(memory, node_memory, "this machine")  # before a unit is trained to calibrate
    models = _models(variants)
    store_bytes, per_run = _store_bytes(variants)
    n_actors = _actors(spec, len(todo))
    calibrations, seconds = _training_time(todo, n_actors, budget_s) if todo and n_actors else ([], None)
    return SweepPlan(store.sweep_id, len(variants), len({v.group_id for v in variants}), len(units),
                     len(units) - len(todo), models, store_bytes, per_run, n_actors, calibrations,
                     len({u.variants[0].shape_key for u in todo}), memory, node_memory, seconds)


def format_plan(plan: SweepPlan, spec: SweepSpec) -> list[str]:
    """The lines ``doodl sweep --dry-run`` prints."""
    res = spec.resources
    lines = [f"dry run of sweep {plan.sweep_id}: the spec is valid; nothing was written or trained",
             f"variants    {plan.n_variants} in {plan.n_groups} groups (configs without the seed)",
             f"units       {plan.n_units} (variants_per_unit {res.variants_per_unit}, as `doodl sweep` packs them)"]
    if plan.units_done:
        lines.append(f"            the store already holds {plan.units_done}: {plan.n_units - plan.units_done} to train")
    for i, m in enumerate(plan.models):
        lines.append(f"{'models' if i == 0 else '':<12}{m.label}: {m.params:,} parameters ({m.variants} variants)")
    if plan.memory:
        lines.append(f"memory      {plan.memory[0].describe()}; this machine has {human_bytes(plan.node_memory)}")
    lines.append(f"store       ~{_size(plan.store_bytes)} estimated ({plan.store_bytes:,} bytes of values; Parquet adds "
                 f"a few kB a file, 3 files a unit, and compresses the rest a little): per run {plan.per_run}")
    if plan.train_seconds is None:
        why = "nothing to train" if plan.units_done == plan.n_units else (
            f"no actor can be placed on this machine (each needs {res.cpus_per_actor} CPU, {res.gpus_per_actor} GPU)")
        lines.append(f"training    {why}")
        return lines
    rate = sum(c.model_steps_per_s for c in plan.calibrations) / len(plan.calibrations)
    scaled = (f"; the other {plan.n_classes - len(plan.calibrations)} scaled by parameters x batch size"
              if len(plan.calibrations) < plan.n_classes else "")
    lines.append(f"training    ~{human_duration(plan.train_seconds)} estimated on this machine with {plan.n_actors} "
                 f"actor{'s' if plan.n_actors > 1 else ''}: calibrated {rate:,.0f} model-steps/s per actor on "
                 f"{len(plan.calibrations)} of {plan.n_classes} unit shapes{scaled}; starting the actors (seconds each) "
                 "and MLflow logging come on top")
    return lines


def _models(variants: list[VariantConfig]) -> list[Model]:
    """Distinct architectures: the family, width, depth and the family's own model axes."""
    from doodl.workers.datasets import dataset_split
    from doodl.workers.models import param_count

    by_arch: dict[tuple, list[VariantConfig]] = {}
    for v in variants:
        uses = family(v.model).uses
        by_arch.setdefault((v.model, v.width, v.depth, *(getattr(v, a) for a in uses)), []).append(v)
    out = []
    for members in by_arch.values():
        v = members[0]
        extra = "".join(f" {a} {getattr(v, a)}" for a in family(v.model).uses)
        out.append(Model(f"{v.model} width {v.width} depth {v.depth}{extra}",
                         param_count(v, dataset_split(v).shape), len(members)))
    return out


def _fixed_bytes(schema: pa.Schema) -> int:
    """Bytes of a row's fixed-width values (numbers, fixed-size lists of numbers); strings
    (run id, status) are dictionary-encoded to a byte or two and left out."""
    total = 0
    for f in schema:
        t = f.type
        if pa.types.is_fixed_size_list(t):
            total += t.list_size * t.value_type.bit_width // 8
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            total += t.bit_width // 8
    return total


def _store_bytes(variants: list[VariantConfig]) -> tuple[int, str]:
    """Estimated bytes of the sweep's shards, and how one run of the largest model counts."""
    from doodl.workers.datasets import dataset_split
    from doodl.workers.engine import snapshot_steps
    from doodl.workers.models import param_count

    total, largest = 0, (-1, "")
    for v in variants:
        n_params = param_count(v, dataset_split(v).shape)
        dim = v.projection_dim or n_params
        dtype = pa.float16() if v.record_dtype == "float16" else pa.float32()
        n_snaps = len(snapshot_steps(v.steps, v.record_every))
        # the schemas with one value, then the values themselves (a fixed-size list of a huge
        # model's length would overflow Arrow's 32-bit list size)
        value, final_value = dtype.bit_width // 8, 4
        snap = _fixed_bytes(shards.snapshot_schema(1, dtype)) + (dim - 1) * value
        traj = _fixed_bytes(shards.trajectory_schema())
        final = _fixed_bytes(shards.finals_schema(1)) + (n_params - 1) * final_value
        run = n_snaps * snap + (v.steps + 1) * traj + final
        total += run
        if n_params > largest[0]:
            what = "projected" if v.projection_dim else "parameter"
            largest = (n_params, f"{n_snaps} snapshots x {dim:,} {what} values x {dtype.bit_width // 8} B "
                                 f"({v.record_dtype}) + {v.steps + 1} trajectory rows x {traj} B + final parameters "
                                 f"{final:,} B = {_size(run)} (largest model)")
    return total, largest[1]


def _actors(spec: SweepSpec, n_units: int) -> int:
    """Actors a local run of the sweep would train on: as the pool sizes itself."""
    from doodl.orchestrator.actor_pool import placeable, wanted

    res = spec.resources
    return min(wanted(res, max(n_units, 1)), placeable(res, {"CPU": float(os.cpu_count() or 1)}))


def _training_time(todo: list[WorkUnit], n_actors: int, budget_s: float) -> tuple[list[Calibration], float]:
    """Calibrate the shape classes (costliest first) within ``budget_s``; the sweep's wall time
    over ``n_actors``: its units' total time shared out, or its longest unit if longer."""
    from doodl.workers.datasets import dataset_split
    from doodl.workers.models import param_count

    classes: dict[tuple, list[WorkUnit]] = {}
    for u in todo:
        classes.setdefault(u.variants[0].shape_key, []).append(u)

    def work(u: WorkUnit) -> float:  # compute proxy of one step of a unit
        v = u.variants[0]
        return param_count(v, dataset_split(v).shape) * v.batch_size * len(u.variants)

    order = sorted(classes, key=lambda k: -sum(work(u) * u.variants[0].steps for u in classes[k]))
    calibrated: dict[tuple, Calibration] = {}
    deadline = time.perf_counter() + budget_s
    for i, key in enumerate(order):
        left = deadline - time.perf_counter()
        if calibrated and left <= 0:
            break
        unit = max(classes[key], key=lambda u: len(u.variants))
        calibrated[key] = calibrate(unit, left / (len(order) - i))
    unit_s = []
    for key, members in classes.items():
        for u in members:
            c = calibrated.get(key)
            if c is None:  # scaled from the first calibrated class, by the compute proxy
                ref_key = order[0]
                c = calibrated[ref_key]
                ratio = work(u) / work(max(classes[ref_key], key=lambda m: len(m.variants)))
                unit_s.append(c.fixed_s + u.variants[0].steps * c.step_s * ratio)
            else:
                unit_s.append(c.fixed_s + u.variants[0].steps * c.step_s * len(u.variants) / c.variants)
    return list(calibrated.values()), max(sum(unit_s) / n_actors, max(unit_s))


def calibrate(unit: WorkUnit, budget_s: float, clock: Callable[[], float] = time.perf_counter) -> Calibration:
    """Time ``unit`` trained for a few steps in this process (nothing is written): a one-step
    warm-up, then two step counts, the second sized to what is left of ``budget_s`` (at most
    the unit's steps). A unit too slow for that is timed by its first count alone: an upper
    bound of a step's cost, the unit's fixed cost in it."""
    import torch

    from doodl.workers.engine import train_unit

    steps = unit.variants[0].steps

    def timed(n: int) -> float:
        configs = [dataclasses.replace(v, steps=n) for v in unit.variants]
        start = clock()
        train_unit(configs)
        return clock() - start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as an actor trains (doodl.workers.actor.UnitTrainer)
    try:
        warm = timed(min(WARM_STEPS, steps))
        if warm > budget_s / 2:  # a heavy model: no time for more
            return Calibration(len(unit.variants), WARM_STEPS, warm, 0.0)
        n1 = min(FIRST_STEPS, steps)
        t1 = timed(n1)
        if n1 == steps:  # a run this short is timed whole
            return Calibration(len(unit.variants), steps, t1 / steps, 0.0)
        n2 = min(steps, int((budget_s - warm - t1) / (t1 / n1)))
        if n2 < n1 + 4:
            return Calibration(len(unit.variants), n1, t1 / n1, 0.0)
        t2 = timed(n2)
    finally:
        torch.set_num_threads(threads)
    step_s = max((t2 - t1) / (n2 - n1), 1e-9)
    return Calibration(len(unit.variants), n2, step_s, max(t1 - n1 * step_s, 0.0))


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"
