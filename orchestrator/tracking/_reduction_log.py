"""The reduction's results in MLflow: a run per group, each group's results of each
analysis on its group run and its seeds' runs, each analysis's all-groups table and files on
the parent. Called by ``doodl reduce`` as results arrive and by ``doodl sync``; a tracking
failure defers the rest (``doodl sync``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from doodl.analysis.registry import REGISTRY
from doodl.orchestrator.tracking._probe import tracking_errors
from doodl.orchestrator.tracking._sweep_log import defer, timed
from doodl.orchestrator.tracking._views import varying_axes
from doodl.workers.config import group_label


@timed
def open_group_runs(sink, groups: dict[str, list[dict]], outcome) -> None:
    """Make sure every group has its MLflow run (where group results go) before logging."""
    if outcome.mlflow_error:
        return
    try:
        sink.ensure_group_runs(groups, varying_axes(rows[0] for rows in groups.values()))
    except tracking_errors() as exc:
        defer(outcome, exc)


@timed
def log_group(sink, rstore, row, key, outcome, runs=None, pictures=None) -> None:
    """Log one group's results of one analysis; runs and pictures are read back from the
    store when not given. After a tracking failure nothing more is tried (``doodl sync``)."""
    import pyarrow.parquet as pq

    if outcome.mlflow_error:
        return

    try:
        gid = row["group_id"]
        if not sink.analysis_pending(rstore.name, row, key):
            return
        if runs is None:
            with rstore.fs.open_input_file(rstore.run_part(gid)) as f:
                runs = pq.read_table(f).to_pylist()
        if pictures is None:
            pictures = {}
            for name in REGISTRY[rstore.name].group_pictures:
                try:
                    with rstore.fs.open_input_stream(rstore.picture_path(name, gid)) as f:
                        pictures[name] = f.read()
                except FileNotFoundError:
                    pass
        with tempfile.TemporaryDirectory() as tmp:
            local = {}
            for name, payload in pictures.items():
                local[name] = str(Path(tmp) / name)
                Path(local[name]).write_bytes(payload)
            outcome.logged_runs += sink.log_group_results(rstore.name, row, runs, local, key)
    except tracking_errors() as exc:
        defer(outcome, exc)


@timed
def log_summaries(sink, store, stores, tables, groups, pictures, outcome) -> None:
    """Log each analysis's all-groups table, files and sweep-level metrics on the parent run."""
    if outcome.mlflow_error:
        return
    labels = {gid: group_label(rows[0]) for gid, rows in groups.items()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            def local_copy(path):
                dest = Path(tmp) / path.rsplit("/", 1)[1]
                with store.fs.open_input_stream(path) as f:
                    dest.write_bytes(f.read())
                return str(dest)

            for name, (groups_table, _) in tables.items():
                rows = [{**r, "label": labels.get(r["group_id"], "")} for r in groups_table.to_pylist()]
                analysis = REGISTRY[name]
                files = [local_copy(p) for p in stores[name].table_paths()]
                # each sweep-wide picture goes with the analysis that drew it; the sweep's
                # own (phase diagram, heatmaps, learning curves) with the taxonomy's phases
                owner = {n: a.name for a in REGISTRY.values() for n in a.sweep_pictures}
                files += [local_copy(p) for n, p in pictures.items() if owner.get(n, "taxonomy") == name]
                files += [local_copy(stores[name].table_path(t)) for t in analysis.sweep_tables]
                metrics = {f"{name}_groups_reduced": float(sum(1 for r in rows if r["error"] is None)),
                           f"{name}_groups_failed": float(sum(1 for r in rows if r["error"] is not None))}
                if analysis.summary is not None:
                    metrics.update(analysis.summary(*tables[name], groups))
                sink.log_reduction_summary(name, rows, files, metrics)
    except tracking_errors() as exc:
        defer(outcome, exc)
