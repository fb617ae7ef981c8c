"""``doodl reduce``: one Ray task per group turns stored trajectories into Morse graphs.

Only groups whose units are all committed (and sound) are reduced; a group already
reduced with the same settings is skipped unless ``force``; a group whose reduction
fails records its error in its row and the others go on. The driver writes each group's
results to ``SWEEP/reduction/`` as it arrives (see :mod:`orchestrator._reduction_store`)
and logs them to MLflow, then rebuilds the all-groups tables.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray

from orchestrator._reduction_store import ReductionStore
from orchestrator.driver import _log_units, _one_line, _open_sink, connect, console, progress_bar
from orchestrator.spec import MorseReduceSpec, ReduceSpec
from orchestrator.store import SweepStore


@dataclass
class ReduceOutcome:
    """What a ``doodl reduce`` call did."""

    sweep_id: str
    n_groups: int
    reduced: int = 0
    skipped: int = 0
    waiting: int = 0  # groups with units not yet committed
    failed: dict[str, str] = field(default_factory=dict)
    fidelity: float = float("nan")
    logged_runs: int = 0
    mlflow_error: str | None = None
    seconds: float = 0.0


def recorded_settings(store: SweepStore) -> MorseReduceSpec:
    """The ``reduce.morse`` settings recorded with the sweep (defaults for older sweeps)."""
    doc = store.read_sweep()
    return ReduceSpec.model_validate(doc.get("spec", {}).get("reduce", {})).morse


def group_label(cfg: dict) -> str:
    """A readable name for a group (its config without the seed)."""
    return (f"width {cfg['width']}, depth {cfg['depth']}, noise {cfg['label_noise']:g}, "
            f"frac {cfg['train_fraction']:g}, lr {cfg['lr']:g}, batch {cfg['batch_size']}")


def _settings_key(settings: MorseReduceSpec) -> str:
    return json.dumps(settings.model_dump(mode="json"), sort_keys=True)


def _same_settings(row: dict, settings: MorseReduceSpec) -> bool:
    return all(row.get(f"param_{k}") == v for k, v in settings.model_dump().items())


def run_reduce(
    store: SweepStore,
    *,
    tracking_uri: str | None,
    settings: MorseReduceSpec | None = None,
    address: str | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> ReduceOutcome:
    """Reduce every ready group of a sweep not yet reduced with ``settings``
    (``tracking_uri=None``: no MLflow logging)."""
    start = time.perf_counter()
    settings = settings or recorded_settings(store)
    variants = store.read_variants().to_pylist()
    groups: dict[str, list[dict]] = {}
    for v in variants:
        groups.setdefault(v["group_id"], []).append(v)
    states = store.unit_states(sorted({v["unit_id"] for v in variants}))
    rstore = ReductionStore(store.fs, store.root)
    previous = rstore.reduced_groups()
    outcome = ReduceOutcome(store.sweep_id, len(groups))
    todo = []
    for gid, rows in groups.items():
        if any(states[r["unit_id"]].state != "committed" for r in rows):
            outcome.waiting += 1
        elif not force and gid in previous and previous[gid]["error"] is None and _same_settings(previous[gid], settings):
            outcome.skipped += 1
        else:
            todo.append(gid)
    if outcome.waiting:
        console.print(f"[yellow]{outcome.waiting} group(s) have units not yet trained (or torn); "
                      "run `doodl sweep` to finish them, then reduce again[/]")

    sink = _open_sink(tracking_uri, store.sweep_id, outcome) if tracking_uri else None
    if sink is not None:
        rows_by_unit: dict[str, list[dict]] = {}
        for v in variants:
            rows_by_unit.setdefault(v["unit_id"], []).append(v)
        committed = sorted(u for u, s in states.items() if s.state == "committed")
        _log_units(sink, store, rows_by_unit, committed, outcome)  # children must exist to carry results
        if outcome.mlflow_error:
            sink = None

    key = _settings_key(settings)
    if todo and shutil.which("dot") is None:
        console.print("[yellow]warning:[/] graphviz's `dot` program is not installed here: Morse graphs are "
                      "saved as DOT text only (install graphviz for SVG/PNG pictures)")
    if todo:
        connect(address)
        _reduce_groups(store, rstore, groups, todo, settings, sink, key, outcome, show_progress)
    # results reduced earlier but never logged (MLflow was down) are logged now
    if sink is not None:
        for gid, row in rstore.reduced_groups().items():
            if gid not in todo and _same_settings(row, settings):
                _log_group(sink, rstore, row, store, key, outcome)

    groups_table, runs_table = rstore.consolidate()
    ok = [r for r in runs_table.to_pylist() if r["status"] == "ok" and r["group_id"] in groups]
    outcome.fidelity = float(np.mean([r["in_attractor"] for r in ok])) if ok else float("nan")
    if sink is not None:
        try:
            labels = {gid: group_label(rows[0]) for gid, rows in groups.items()}
            table_rows = [{**r, "label": labels.get(r["group_id"], "")} for r in groups_table.to_pylist()]
            with tempfile.TemporaryDirectory() as tmp:
                files = []
                for name in ("morse.parquet", "morse_runs.parquet"):
                    local = Path(tmp) / name
                    with store.fs.open_input_stream(f"{rstore.root}/{name}") as f:
                        local.write_bytes(f.read())
                    files.append(str(local))
                sink.log_morse_summary(table_rows, files, {
                    "morse_fidelity": outcome.fidelity,
                    "morse_groups_reduced": float(sum(1 for r in table_rows if r["error"] is None)),
                    "morse_groups_failed": float(sum(1 for r in table_rows if r["error"] is not None)),
                })
        except Exception as exc:
            outcome.mlflow_error = _one_line(exc)
            console.print(f"[yellow]warning:[/] MLflow logging failed ({outcome.mlflow_error}); re-run to log.")
    outcome.seconds = time.perf_counter() - start
    return outcome


def _reduce_groups(store, rstore, groups, todo, settings, sink, key, outcome, show_progress) -> None:
    from analysis.dynamics import morse_for_group

    task = ray.remote(morse_for_group).options(num_cpus=1, max_retries=2)
    params = settings.model_dump()
    inflight = {}
    for gid in todo:
        rows = groups[gid]
        ref = task.remote(store.uri, gid, sorted({r["unit_id"] for r in rows}), [r["run_id"] for r in rows],
                          params, group_label(rows[0]))
        inflight[ref] = gid
    progress = progress_bar("groups", show_progress)
    t0 = time.perf_counter()
    try:
        with progress:
            bar = progress.add_task(f"reduce {store.sweep_id}", total=len(todo), rate="")
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                gid = inflight.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError) as exc:
                    result = {"row": {"group_id": gid, "n_runs": len(groups[gid]), "error": _one_line(exc),
                                      "run_ids": [r["run_id"] for r in groups[gid]],
                                      **{f"param_{k}": v for k, v in params.items()}},
                              "runs": [{"run_id": r["run_id"], "group_id": gid, "status": "error",
                                        "final_node": -1, "in_attractor": False, "final_point": []}
                                       for r in groups[gid]],
                              "pictures": {}}
                row = result["row"]
                rstore.write_group(row, result["runs"], result["pictures"])
                if row["error"] is not None:
                    outcome.failed[gid] = row["error"]
                    console.print(f"[red]group {gid} ({group_label(groups[gid][0])}) failed: {row['error']}[/]")
                else:
                    outcome.reduced += 1
                if sink is not None:
                    _log_group(sink, rstore, row, store, key, outcome, result["runs"], result["pictures"])
                done = outcome.reduced + len(outcome.failed)
                progress.update(bar, advance=1, rate=f"{done / max(time.perf_counter() - t0, 1e-9):.2f}/s")
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref, force=True)
        console.print(f"[red]cancelled[/]: {outcome.reduced} groups reduced and kept; run the same command "
                      "again to reduce the rest.")
        raise


def _log_group(sink, rstore, row, store, key, outcome, runs=None, pictures=None) -> None:
    """Log one group's results; pictures and runs are read back from the store if not given."""
    import pyarrow.parquet as pq

    try:
        gid = row["group_id"]
        todo_runs = [r for r in (row.get("run_ids") or []) if sink.morse_logged.get(r) != key and r in sink.children]
        if not todo_runs:
            return
        if runs is None:
            with store.fs.open_input_file(f"{rstore.root}/morse/runs/{gid}.parquet") as f:
                runs = pq.read_table(f).to_pylist()
        if pictures is None:
            pictures = {}
            for name in ("morse_graph.dot", "morse_graph.svg", "morse_graph.png", "morse_sets.png"):
                try:
                    with store.fs.open_input_stream(f"{rstore.root}/plots/{gid}/{name}") as f:
                        pictures[name] = f.read()
                except FileNotFoundError:
                    pass
        with tempfile.TemporaryDirectory() as tmp:
            local = {}
            for name, payload in pictures.items():
                local[name] = str(Path(tmp) / name)
                Path(local[name]).write_bytes(payload)
            outcome.logged_runs += sink.log_group_morse(row, runs, local, key)
    except Exception as exc:
        outcome.mlflow_error = _one_line(exc)
        console.print(f"[yellow]warning:[/] MLflow logging failed ({outcome.mlflow_error}); re-run to log.")

