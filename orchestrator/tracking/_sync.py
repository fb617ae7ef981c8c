"""``doodl sync``: log to MLflow everything the store holds and MLflow lacks.

The store is the source of truth; MLflow is a view of it. When MLflow was unreachable
(or its database locked for too long) during ``doodl sweep`` or ``doodl reduce``, the work
went on and logging was deferred: this command catches up, without training or reducing.
It is idempotent: children are found by tags, results carry the settings they were
computed with, and nothing already logged is logged twice. Duplicate runs (two drivers that
ran at once before sweeps had a lease) are merged: one parent, one child per variant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from doodl.analysis.registry import REGISTRY
from doodl.orchestrator.results import stored_tables, sweep_columns, sweep_pictures_in_store
from doodl.orchestrator.store import ReductionStore, SweepStore, UnitState
from doodl.orchestrator.tracking._probe import tracking_errors
from doodl.orchestrator.tracking._reduction_log import log_group, log_summaries, open_group_runs
from doodl.orchestrator.tracking._sweep_log import defer, log_sweep_done, log_units, open_sink


@dataclass
class SyncOutcome:
    sweep_id: str
    logged_runs: int = 0
    merged_runs: int = 0  # duplicate runs deleted
    mlflow_error: str | None = None
    seconds: float = 0.0


def sync_sweep(store: SweepStore, tracking_uri: str) -> SyncOutcome:
    """Log the sweep's committed variants and stored reduction results to MLflow."""
    start = time.perf_counter()
    doc = store.read_sweep()
    variants = store.read_variants().to_pylist()
    outcome = SyncOutcome(store.sweep_id)
    sink = open_sink(tracking_uri, doc.get("name", store.sweep_id), store.sweep_id, outcome, store)
    if sink is None:
        return outcome
    try:
        outcome.merged_runs = sink.merge_duplicates()
    except tracking_errors() as exc:
        defer(outcome, exc)
        return outcome
    rows_by_unit: dict[str, list[dict]] = {}
    for v in variants:
        rows_by_unit.setdefault(v["unit_id"], []).append(v)
    states = store.unit_states(sorted(rows_by_unit))
    committed = sorted(u for u, s in states.items() if s.state == UnitState.COMMITTED)
    try:
        sink.log_parent({"n_variants": len(variants), "n_units": len(rows_by_unit), "dataset": variants[0]["dataset"],
                         "store": store.uri})
    except tracking_errors() as exc:
        defer(outcome, exc)
        return outcome
    log_units(sink, store, rows_by_unit, committed, outcome)
    if len(committed) == len(rows_by_unit) and not outcome.mlflow_error:
        log_sweep_done(sink, store, committed, outcome)
    groups: dict[str, list[dict]] = {}
    for v in variants:
        groups.setdefault(v["group_id"], []).append(v)
    stores = {name: ReductionStore(store.fs, store.root, name) for name in REGISTRY}
    tables = {}
    if any(rstore.reduced_groups() for rstore in stores.values()):
        open_group_runs(sink, groups, outcome)
    for name, rstore in stores.items():
        rows = rstore.reduced_groups()
        if not rows:
            continue
        tables[name] = stored_tables(rstore)
        extra = sweep_columns(REGISTRY[name], tables[name][0])
        for row in rows.values():
            if row["group_id"] in groups:
                log_group(sink, rstore, {**row, **extra.get(row["group_id"], {})}, row["settings_key"], outcome)
    if tables:
        log_summaries(sink, store, stores, tables, groups, sweep_pictures_in_store(stores), outcome)
    outcome.seconds = time.perf_counter() - start
    return outcome
