"""The analyses ``doodl reduce`` runs, each declared once.

An :class:`Analysis` entry says everything the orchestrator needs to run an analysis and
show its results: its settings model (the spec's ``reduce.NAME`` section and the only
source of its defaults), its group task (one Ray task per group, named by import path so
this module loads neither torch nor CMGDB), the module whose ``METHOD_VERSION`` keys its
stored results, the pictures its task draws per group, an optional sweep-wide step run once
every group is reduced, its MLflow views and its sweep-level metrics.

``doodl reduce``, ``doodl sync``, the MLflow view, the reconciliation and the report loop
over :data:`REGISTRY`; a new analysis is one entry here (or :func:`register`) plus its
module. See ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from doodl.analysis import schemas, views
from doodl.analysis.settings import (AnalysisSettings, EarlySettings, KoopmanSettings, MorseSettings, NtkSettings,
                                     TaxonomySettings)


@dataclass(frozen=True)
class Analysis:
    """One analysis of ``doodl reduce``.

    ``task`` is ``"module:function"`` called as ``function(sweep_root_uri, group_id,
    unit_ids, variants, settings, title)`` on each group (``title``, the group's label,
    only when ``titled``); it returns ``{"row": ..., "runs": [...], "pictures": {name:
    bytes}}`` and reports a failure in ``row["error"]`` rather than raising.

    ``sweep_step`` (``"module:function"``), when set, runs once every group is reduced,
    as ``function(reduction_store, groups, title)``, and returns the consolidated
    (groups, runs) tables; the columns in ``sweep_columns`` are its per-group results,
    and the group results reach MLflow only after it (they carry those columns).
    """

    name: str
    settings: type[AnalysisSettings]
    task: str
    method: str  # the module that declares METHOD_VERSION
    group_view: Callable[[dict], views.View]
    seed_view: Callable[[dict], views.View]
    table_columns: tuple[str, ...]  # the all-groups table logged on the parent, in this order
    schemas: tuple  # pyarrow schemas of its (groups, runs) tables in the store
    titled: bool = False
    group_pictures: tuple[str, ...] = ()  # drawn per group, in reduction/plots/GROUP_ID/
    sweep_step: str | None = None
    sweep_columns: tuple[str, ...] = ()
    sweep_tables: tuple[str, ...] = ()  # tables the sweep step writes beside its own (reduction/NAME.parquet)
    sweep_pictures: tuple[str, ...] = ()  # pictures the sweep step draws (reduction/plots/NAME)
    # metrics on the sweep's parent run from the consolidated (groups, runs) tables and the groups
    summary: Callable[..., dict[str, float]] | None = None
    report_columns: tuple[str, ...] = ()  # shown per group in the report (beyond its own section)

    @property
    def tag(self) -> str:
        """The MLflow tag holding the settings key a run's results of this analysis carry."""
        return f"doodl.{self.name}"


def _morse_summary(groups_table, runs_table, groups) -> dict[str, float]:
    from doodl.analysis.validity import sweep_validity

    return {f"morse_{k}": v for k, v in sweep_validity(groups_table, runs_table, groups).items()}


def _early_summary(groups_table, runs_table, groups) -> dict[str, float]:
    """Held-out outcome accuracy over the sweep's runs (groups weighted by their runs)
    beside chance and the curve baseline, and the final accuracy's errors, per fraction."""
    rows = [r for r in groups_table.to_pylist() if r["error"] is None and r["group_id"] in groups]
    if not rows:
        return {}
    out = {}
    n = sum(r["n_runs"] for r in rows)
    out["early_outcome_chance"] = sum(r["outcome_chance"] * r["n_runs"] for r in rows) / n
    for k, f in enumerate(rows[0]["fractions"]):
        name = views.fraction_name(f)
        for column in ("outcome_accuracy", "outcome_baseline", "final_acc_mae", "final_acc_chance_mae",
                       "final_acc_baseline_mae"):
            weighted = [(r[column][k], r["n_runs"]) for r in rows if r.get(column) and r[column][k] is not None]
            if weighted:
                out[f"early_{column}_{name}"] = sum(v * w for v, w in weighted) / sum(w for _, w in weighted)
    return out


def _koopman_summary(groups_table, runs_table, groups) -> dict[str, float]:
    classes = {c for c in groups_table.column("koopman_class").to_pylist() if c is not None}
    return {"koopman_classes": float(len(classes))}


REGISTRY: dict[str, Analysis] = {a.name: a for a in (
    Analysis("morse", MorseSettings, task="doodl.analysis.morse_task:morse_for_group",
             method="doodl.analysis.dynamics", titled=True,
             group_pictures=("morse_graph.png", "morse_graph.dot", "morse_sets.png", "connection_matrix.png"),
             group_view=views.morse_group, seed_view=views.morse_seed, table_columns=views.MORSE_COLUMNS,
             schemas=(schemas.MORSE_GROUP_SCHEMA, schemas.MORSE_RUN_SCHEMA),
             summary=_morse_summary),
    Analysis("taxonomy", TaxonomySettings, task="doodl.analysis.taxonomy:taxonomy_for_group",
             method="doodl.analysis.taxonomy", group_view=views.taxonomy_group, seed_view=views.taxonomy_seed,
             table_columns=views.TAXONOMY_COLUMNS,
             schemas=(schemas.TAXONOMY_GROUP_SCHEMA, schemas.TAXONOMY_RUN_SCHEMA)),
    Analysis("koopman", KoopmanSettings, task="doodl.analysis.koopman_task:koopman_for_group",
             method="doodl.analysis.koopman", sweep_step="doodl.analysis.koopman_task:sweep_step",
             sweep_columns=("koopman_class",), sweep_tables=("koopman_pairs",),
             sweep_pictures=("koopman_classes.png",),
             group_view=views.koopman_group, seed_view=views.koopman_seed, table_columns=views.KOOPMAN_COLUMNS,
             schemas=(schemas.KOOPMAN_GROUP_SCHEMA, schemas.KOOPMAN_RUN_SCHEMA),
             summary=_koopman_summary),
    Analysis("ntk", NtkSettings, task="doodl.analysis.ntk_task:ntk_for_group", method="doodl.analysis.ntk",
             titled=True, group_pictures=("ntk.png",), group_view=views.ntk_group_or_seed,
             seed_view=views.ntk_group_or_seed, table_columns=views.NTK_COLUMNS,
             schemas=(schemas.NTK_GROUP_SCHEMA, schemas.NTK_RUN_SCHEMA)),
    Analysis("early", EarlySettings, task="doodl.analysis.early_task:early_for_group",
             method="doodl.analysis.early_task", sweep_step="doodl.analysis.early_task:sweep_step",
             sweep_columns=("final_acc_mae", "final_acc_chance_mae", "final_acc_baseline_mae"),
             sweep_tables=("early_predictions",), sweep_pictures=("early_outcome.png",),
             group_view=views.early_group, seed_view=views.early_seed, table_columns=views.EARLY_COLUMNS,
             schemas=(schemas.EARLY_GROUP_SCHEMA, schemas.EARLY_RUN_SCHEMA), summary=_early_summary),
)}


def task_error(exc: BaseException) -> str:
    """A failed group's ``row["error"]``: the exception in one line (the contract of a group task)."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def error_runs(group_id: str, run_ids: list[str]) -> list[dict]:
    """A failed group's ``runs``: each of its runs with status ``error``."""
    return [{"run_id": r, "group_id": group_id, "status": "error"} for r in run_ids]


def analyses() -> tuple[str, ...]:
    """The registered analyses' names, in the order they run and are shown."""
    return tuple(REGISTRY)


def register(analysis: Analysis) -> None:
    """Add an analysis (a plugin, or a test's): it runs with its settings' defaults unless
    the spec's ``reduce`` section was built after it was registered (``doodl.orchestrator.spec``)."""
    if analysis.name in REGISTRY:
        raise ValueError(f"an analysis named {analysis.name!r} is already registered")
    REGISTRY[analysis.name] = analysis


def load(path: str) -> Callable:
    """The function named by ``"module:function"`` (imported now, not at registration)."""
    import importlib

    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def method_version(name: str):
    """The ``METHOD_VERSION`` of an analysis's method (imports its module)."""
    import importlib

    return importlib.import_module(REGISTRY[name].method).METHOD_VERSION
