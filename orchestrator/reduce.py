"""``doodl reduce``: Ray tasks per group turn the stored sweep into Morse graphs, the
connectivity taxonomy, Koopman spectra and NTK evolution.

For each registered analysis (:mod:`doodl.analysis.registry`: its group task, settings,
pictures, sweep-wide step) and each group whose units are all committed (and sound), one
task. A group already reduced with the same settings is skipped unless
``force``; a group whose reduction fails records its error in its row and the others go
on. The driver writes each result to ``SWEEP/reduction/`` as it arrives (see
:mod:`doodl.orchestrator.store.reduction`) and logs it to MLflow, then rebuilds the all-groups
tables, each analysis's sweep-wide step (Koopman's equivalence classes, which need every
group's spectra: its results reach MLflow once they are known) and the sweep's pictures
(phase diagram, metric heatmaps, learning curves).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import ray

from doodl.orchestrator.session import Meter, connect
from doodl.orchestrator.expand import AXES
from doodl.analysis.registry import REGISTRY, error_runs, load, method_version
from doodl.analysis.registry import analyses as registered
from doodl.orchestrator.spec import ReduceSpec
from doodl.orchestrator.store import ReductionStore, SweepLease, SweepStore, UnitState
from doodl.orchestrator.results import sweep_columns, sweep_pictures_in_store
from doodl.orchestrator.early_stop import write_stopped_phases
from doodl.orchestrator.tracking import (console, log_group, log_summaries, log_units, one_line, open_group_runs,
                                   open_sink)
from doodl.workers.config import group_label
from doodl.workers.shards import UnreadableShard



@dataclass
class AnalysisCounts:
    reduced: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class ReduceOutcome:
    """What a ``doodl reduce`` call did."""

    sweep_id: str
    n_groups: int
    counts: dict[str, AnalysisCounts] = field(default_factory=dict)
    waiting: int = 0  # groups with units not yet committed
    stopped: int = 0  # groups left with fewer than 2 finished runs by early stopping: nothing to reduce
    # per analysis, its sweep-level metrics (its registry entry's ``summary``), as on the parent run
    summaries: dict[str, dict[str, float]] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    logged_runs: int = 0
    mlflow_error: str | None = None
    mlflow_seconds: float = 0.0  # of ``seconds``, spent logging to MLflow
    seconds: float = 0.0

    @property
    def validity(self) -> dict[str, float]:
        """The Morse graphs' validity over the sweep's runs in groups with a verdict."""
        return {k.removeprefix("morse_"): v for k, v in self.summaries.get("morse", {}).items()}

    @property
    def koopman_classes(self) -> int:
        """Dynamical equivalence classes among the groups with a spectrum."""
        return int(self.summaries.get("koopman", {}).get("koopman_classes", 0))

    @property
    def failed(self) -> dict[str, str]:
        return {f"{name}:{g}": e for name, c in self.counts.items() for g, e in c.failed.items()}


def recorded_settings(store: SweepStore) -> ReduceSpec:
    """The ``reduce`` settings recorded with the sweep (defaults for older sweeps)."""
    section = dict(store.read_sweep().get("spec", {}).get("reduce", {}))
    section = {name: REGISTRY[name].settings.from_record(value) if name in REGISTRY else value
               for name, value in section.items()}
    return ReduceSpec.model_validate(section)


def _task_settings(settings: ReduceSpec, name: str) -> dict:
    # an analysis registered after the spec model was built runs with its defaults
    section = getattr(settings, name, None) or REGISTRY[name].settings()
    return section.computation()


def _key(name: str, params: dict) -> str:
    """What a stored result was computed with: the settings and the method's version."""
    return json.dumps({"method_version": method_version(name), **params}, sort_keys=True)


def run_reduce(
    store: SweepStore,
    *,
    tracking_uri: str | None,
    settings: ReduceSpec | None = None,
    analyses: tuple[str, ...] | None = None,
    address: str | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> ReduceOutcome:
    """Reduce every ready group of a sweep not yet reduced with ``settings``
    (``tracking_uri=None``: no MLflow logging). A second reduction of the same sweep at
    once is refused (:class:`doodl.orchestrator.store.LeaseHeld`); training may go on meanwhile."""
    start = time.perf_counter()
    settings = settings or recorded_settings(store)
    analyses = analyses or registered()
    store.read_sweep()  # an unknown sweep is refused before a lease is written for it
    with SweepLease(store, "reducing"):
        return _run_reduce(store, tracking_uri, settings, analyses, address, force, show_progress, start)


def _run_reduce(store: SweepStore, tracking_uri: str | None, settings: ReduceSpec, analyses, address, force: bool,
                show_progress: bool, start: float) -> ReduceOutcome:
    variants = store.read_variants().to_pylist()
    groups: dict[str, list[dict]] = {}
    for v in variants:
        groups.setdefault(v["group_id"], []).append(v)
    states = store.unit_states(sorted({v["unit_id"] for v in variants}))
    ready = [g for g, rows in groups.items() if all(states[r["unit_id"]].state == UnitState.COMMITTED for r in rows)]
    outcome = ReduceOutcome(store.sweep_id, len(groups), waiting=len(groups) - len(ready))
    if outcome.waiting:
        console.print(f"[yellow]{outcome.waiting} group(s) have units not yet trained (or torn); "
                      "run `doodl sweep` to finish them, then reduce again[/]")
    if store.stop_rule():
        stopped = _stopped_groups(store, {g: groups[g] for g in ready})
        ready = [g for g in ready if g not in stopped]
        outcome.stopped = len(stopped)
        if stopped:
            predicted = write_stopped_phases(store, {g: groups[g] for g in stopped})
            said = ", ".join(f"{r['predicted_phase']}" for r in predicted if r["predicted_phase"])
            console.print(f"{len(stopped)} group(s) have fewer than 2 runs trained to the end (the others were "
                          "stopped early on purpose): not reduced" + (f"; phases predicted: {said}" if said else ""))
    stores = {name: ReductionStore(store.fs, store.root, name) for name in analyses}
    params = {name: _task_settings(settings, name) for name in analyses}
    keys = {name: _key(name, params[name]) for name in analyses}
    todo: list[tuple[str, str]] = []
    for name in analyses:
        outcome.counts[name] = AnalysisCounts()
        previous = stores[name].reduced_groups()
        for gid in ready:
            row = previous.get(gid)
            if not force and row is not None and row["error"] is None and row["settings_key"] == keys[name]:
                outcome.counts[name].skipped += 1
            else:
                todo.append((name, gid))

    torn: set[str] = set()  # units found unreadable on the way
    experiment = store.read_sweep().get("name", store.sweep_id)
    sink = open_sink(tracking_uri, experiment, store.sweep_id, outcome, store) if tracking_uri else None
    if sink is not None:
        rows_by_unit: dict[str, list[dict]] = {}
        for v in variants:
            rows_by_unit.setdefault(v["unit_id"], []).append(v)
        committed = sorted(u for u, s in states.items() if s.state == UnitState.COMMITTED)
        # children must exist to carry results; a unit found unreadable is marked torn and its groups wait
        torn |= _readable(store, committed, lambda units: log_units(sink, store, rows_by_unit, units, outcome))
        if torn:  # their groups wait for the retraining, as groups with units not yet trained do
            hit = {gid for gid in ready if any(r["unit_id"] in torn for r in groups[gid])}
            todo = [(name, gid) for name, gid in todo if gid not in hit]
            outcome.waiting += len(hit)
        open_group_runs(sink, groups, outcome)
        if outcome.mlflow_error:
            sink = None

    if todo:
        connect(address)
        _run_tasks(store, stores, groups, todo, params, keys, sink, outcome, show_progress, torn)
    tables = {name: consolidate(stores[name], groups, store.sweep_id) for name in analyses}
    # results reduced earlier but never logged (MLflow was down) are logged now, and
    # Koopman's, which wait for the sweep's classes
    if sink is not None:
        done_now = {(name, gid) for name, gid in todo if not REGISTRY[name].sweep_step}
        for name in analyses:
            extra = sweep_columns(REGISTRY[name], tables[name][0])
            for gid, row in stores[name].reduced_groups().items():
                if (name, gid) not in done_now and row["settings_key"] == keys[name] and gid in groups:
                    log_group(sink, stores[name], {**row, **extra.get(gid, {})}, keys[name], outcome)

    pictures = {}
    for name in analyses:
        if REGISTRY[name].summary is not None:
            outcome.summaries[name] = REGISTRY[name].summary(*tables[name], groups)
        pictures.update({n: p for n, p in sweep_pictures_in_store({name: stores[name]}).items()
                         if n in REGISTRY[name].sweep_pictures})
    if "taxonomy" in tables:  # the sweep's pictures are drawn from the taxonomy's phases
        tax_rows = [r for r in tables["taxonomy"][0].to_pylist() if r["group_id"] in groups]
        for r in tax_rows:
            if r["phase"]:
                outcome.phases[r["phase"]] = outcome.phases.get(r["phase"], 0) + 1
        committed = sorted(u for u, st in states.items() if st.state == UnitState.COMMITTED and u not in torn)
        pictures.update(_sweep_pictures(stores["taxonomy"], tax_rows, groups, settings, store, committed))
    if sink is not None:
        log_summaries(sink, store, stores, tables, groups, pictures, outcome)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _readable(store: SweepStore, units: list[str], read) -> set[str]:
    """Call ``read(units)``, leaving out any unit whose shard turns out unreadable (bit rot:
    its size matched its marker): that unit is marked torn, said in one line, and the read is
    made again without it. Returns the units marked torn."""
    units, torn = list(units), set()
    while True:
        try:
            read(units)
            return torn
        except UnreadableShard as exc:
            _mark_torn(store, exc.unit_id, str(exc))
            units.remove(exc.unit_id)
            torn.add(exc.unit_id)
            if not units:
                return torn


def _mark_torn(store: SweepStore, unit_id: str, why: str) -> None:
    store.mark_torn(unit_id)
    console.print(f"[red]{why}: marked torn; its groups wait, and `doodl sweep` retrains it[/]")


def _tasks(names) -> dict:
    """Each analysis's group task as a Ray remote function (imported here, on the driver)."""
    return {name: ray.remote(load(REGISTRY[name].task)).options(num_cpus=1, max_retries=2) for name in names}


def consolidate(rstore: ReductionStore, groups: dict[str, list[dict]], title: str = ""):
    """Rebuild an analysis's all-groups tables, through its sweep-wide step if it has one."""
    step = REGISTRY[rstore.name].sweep_step
    return load(step)(rstore, groups, title) if step else rstore.consolidate()


def _stopped_groups(store: SweepStore, groups: dict[str, list[dict]]) -> set[str]:
    """Groups where early stopping left fewer than 2 runs trained to the end: no analysis
    has a group's dynamics, phase or outcomes to give from one run (or none)."""
    units = sorted({v["unit_id"] for rows in groups.values() for v in rows})
    finals = store.read_unit_rows("finals", units, ["run_id", "status"]) if units else None
    status = dict(zip(finals.column("run_id").to_pylist(), finals.column("status").to_pylist())) if units else {}
    return {g for g, rows in groups.items()
            if any(status.get(v["run_id"]) == "stopped" for v in rows)
            and sum(status.get(v["run_id"]) == "ok" for v in rows) < 2}


def _failed_result(gid: str, rows: list[dict], error: str) -> dict:
    return {"row": {"group_id": gid, "n_runs": len(rows), "error": error, "run_ids": [r["run_id"] for r in rows]},
            "runs": error_runs(gid, [r["run_id"] for r in rows]), "pictures": {}}


def _run_tasks(store, stores, groups, todo, params, keys, sink, outcome, show_progress, torn: set[str]) -> None:
    """One Ray task per (analysis, group) of ``todo``; each result is stored, counted and
    logged as it arrives. On Ctrl-C the finished groups stay."""
    tasks = _tasks({name for name, _ in todo})
    inflight = {}
    for name, gid in todo:
        rows = groups[gid]
        units = sorted({r["unit_id"] for r in rows})
        title = (group_label(rows[0]),) if REGISTRY[name].titled else ()
        inflight[tasks[name].remote(store.uri, gid, units, rows, params[name], *title)] = (name, gid)
    def mark(unit_id: str, why: str) -> None:
        if unit_id not in torn:
            _mark_torn(store, unit_id, why)
            torn.add(unit_id)

    on_result = _ResultHandler(stores, groups, params, keys, sink, outcome, mark)
    try:
        with Meter(f"reduce {store.sweep_id}", "group analyses", len(todo), show=show_progress, digits=2) as meter:
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                name, gid = inflight.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError) as exc:
                    result = _failed_result(gid, groups[gid], one_line(exc))
                on_result(name, gid, result)
                meter.advance()
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref, force=True)
        console.print("[red]cancelled[/]: finished groups are kept; run the same command again to reduce the rest.")
        raise


@dataclass
class _ResultHandler:
    """What happens to one group's result of one analysis: its settings beside it, into
    the store, into the counts (with its error or warnings shown), and into MLflow unless
    the analysis has a sweep-wide step still to come."""

    stores: dict
    groups: dict[str, list[dict]]
    params: dict[str, dict]
    keys: dict[str, str]
    sink: object
    outcome: ReduceOutcome
    torn: object  # called with (unit id, why) for a unit a task found unreadable

    def __call__(self, name: str, gid: str, result: dict) -> None:
        row = result["row"]
        row["settings_key"] = self.keys[name]
        for k, v in self.params[name].items():  # the settings sit beside the results
            if not isinstance(v, dict):
                row.setdefault(f"param_{k}", v)
        self.stores[name].write_group(row, result["runs"], result["pictures"])
        counts, label = self.outcome.counts[name], group_label(self.groups[gid][0])
        if row["error"] is not None and row["error"].startswith(f"{UnreadableShard.__name__}: unit "):
            self.torn(row["error"].split()[2].rstrip(":"), row["error"].split(": ", 1)[1])
        if row["error"] is not None:
            counts.failed[gid] = row["error"]
            console.print(f"[red]{name} of group {gid} ({label}) failed: {row['error']}[/]")
        else:
            counts.reduced += 1
            for warning in row.get("warnings") or []:
                console.print(f"[yellow]warning:[/] {name} of group {gid} ({label}): {warning}")
        if self.sink is not None and not REGISTRY[name].sweep_step:  # those wait for the sweep-wide step
            log_group(self.sink, self.stores[name], row, self.keys[name], self.outcome, result["runs"],
                      result["pictures"])


def _diagram_axes(settings: ReduceSpec, store: SweepStore, groups) -> tuple[str, str, list[str]]:
    """The phase diagram's two axes (the spec's, or the first two swept) and the rest."""
    swept = [a for a in AXES if len({rows[0][a] for rows in groups.values()}) > 1]
    axes = settings.taxonomy.axes or (swept + [a for a in ("width", "batch_size") if a not in swept])[:2]
    return axes[0], axes[1], [a for a in swept if a not in axes]


def _sweep_pictures(rstore, tax_rows, groups, settings, store, committed: list[str]) -> dict[str, str]:
    """Phase diagram and metric heatmaps into ``reduction/plots``; returns name -> store path."""
    from doodl.analysis.phase_diagram import METRICS, plot_metric_heatmap, plot_phase_diagram

    if not tax_rows:
        return {}
    x, y, others = _diagram_axes(settings, store, groups)
    rows = [{**{a: groups[r["group_id"]][0][a] for a in AXES}, **r} for r in tax_rows]
    out = {"phase_diagram.png": rstore.write_file(
        "phase_diagram.png", plot_phase_diagram(rows, x, y, others, title=store.sweep_id))}
    for metric in METRICS:
        name = f"heatmap_{metric}.png"
        out[name] = rstore.write_file(name, plot_metric_heatmap(rows, metric, x, y, others))
    curves = _learning_curves(store, groups, committed)
    if curves:
        out["learning_curves.png"] = rstore.write_file("learning_curves.png", curves)
    return out


def _learning_curves(store: SweepStore, groups, committed: list[str]) -> bytes | None:
    """Train against held-out accuracy per group (seeds overlaid), from the committed units
    (their states as this reduction found them: no second listing of the store)."""
    from doodl.analysis.learning_curves import plot_learning_curves, run_curves

    if not committed:
        return None
    read: dict = {}  # the curves of the units that could be read (an unreadable one is marked torn)
    _readable(store, committed, lambda units: read.update(curves=run_curves(
        store.read_unit_rows("trajectories", units, ["run_id", "step", "train_acc"]),
        store.read_snapshot_rows(units, ["run_id", "step", "test_acc"]))))
    curves = read.get("curves", {})
    by_group = {group_label(rows[0]): [curves[v["run_id"]] for v in rows if v["run_id"] in curves]
                for rows in groups.values()}
    by_group = {k: v for k, v in by_group.items() if v}
    return plot_learning_curves(by_group, title=store.sweep_id) if by_group else None
