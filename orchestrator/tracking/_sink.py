"""The MLflow view of a sweep, written only by the driver.

One experiment per sweep name, one parent run per sweep (tag ``doodl.sweep_id``), one
child run per variant (tag ``doodl.run_id``). A child's params, metrics and its
``doodl.logged`` tag go in one ``log_batch`` call; MLflow 3's SQL store commits params,
metrics and tags one after another, the tag last, so a child carrying ``doodl.logged`` is
fully logged and one without it is logged again (after a crash between those commits its
curve points can then appear twice in its history). Re-running a sweep finds the existing
runs by tag instead of creating new ones.

Processes of one sweep may log at once (the training driver, ``doodl reduce`` while it
trains, ``doodl sync``). Each reads the view once and creates runs only while holding the
sweep's ``tracking`` lock in the store (:class:`doodl.orchestrator.store.SweepMutex`),
reading the view again first when another process held it since: so no run is created
twice. A child another process created is that process's to log.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from doodl.orchestrator.tracking._client import LOCK_RETRY_DELAYS, one_creator, tracking_client
from doodl.orchestrator.tracking._queries import search_all
from doodl.analysis.registry import REGISTRY
from doodl.orchestrator.tracking._views import (CURVES, HELD_OUT_CURVES, PARAM_FIELDS, group_results,
                                          group_name, group_run_name, metrics_of, param_text, run_name, seed_results,
                                          subsample_steps)
from doodl.orchestrator.tracking.tags import (EXPERIMENT_KIND, TAG_GROUP, TAG_GROUP_LABEL, TAG_LOGGED,
                                        TAG_ROLE, TAG_RUN, TAG_SWEEP)
from doodl.workers.shards import FINAL_METRICS

DEFAULT_TRACKING_URI = "sqlite:///doodl-mlflow.db"
log = logging.getLogger("doodl.mlflow")
SERVER_WORKERS = 4  # threads logging runs to a tracking server at once

# a variant's end in the store -> its MLflow run status: a run stopped early was ended on purpose
_RUN_STATUS = {"ok": "FINISHED", "stopped": "KILLED", "diverged": "FAILED"}


class TrackingBusy(TimeoutError):
    """Another process held the sweep's run-creation lock past the wait: logging is
    deferred (a :func:`tracking_errors` kind, as a server that is down)."""


@dataclass
class SweepView:
    """What MLflow holds of one sweep, read back by its tags."""

    parent: str | None = None
    children: dict[str, str] = field(default_factory=dict)  # variant run id -> its MLflow run
    groups: dict[str, str] = field(default_factory=dict)  # group id -> its group run
    logged: set[str] = field(default_factory=set)  # variants whose run is fully logged
    # analysis -> MLflow run id (a seed's or a group's) -> settings key of the results it holds
    reduction_logged: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))


def read_view(client, experiment_id: str, sweep_id: str) -> SweepView:
    """The sweep's runs in the experiment, every page of them."""
    view = SweepView()
    runs = list(search_all(client, [experiment_id], f"tags.`{TAG_SWEEP}` = '{sweep_id}'"))
    # of duplicates (two drivers at once, before leases), the one merge_duplicates keeps wins
    for run in sorted(runs, key=_keep_order, reverse=True):
        role = run.data.tags.get(TAG_ROLE)
        if role == "child":
            rid = run.data.tags.get(TAG_RUN)
            view.children[rid] = run.info.run_id
            if run.data.tags.get(TAG_LOGGED) == "1":
                view.logged.add(rid)
        elif role == "group":
            view.groups[run.data.tags.get(TAG_GROUP)] = run.info.run_id
        elif role == "parent":
            view.parent = run.info.run_id
    mine = set(view.children.values()) | set(view.groups.values())
    for run in runs:
        if run.info.run_id in mine:
            for name, analysis in REGISTRY.items():
                if analysis.tag in run.data.tags:
                    view.reduction_logged[name][run.info.run_id] = run.data.tags[analysis.tag]
    return view


class MlflowSink:
    """Parent and child runs of one sweep in one experiment; idempotent by tags."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_id: str, lock_retry_delays=LOCK_RETRY_DELAYS,
                 workers: int | None = None, creation_lock=None):
        """``creation_lock``: the sweep's :class:`doodl.orchestrator.store.SweepMutex`, held
        around every creation of runs; None when no other process logs this sweep."""
        self.workers = workers if workers is not None else (
            SERVER_WORKERS if tracking_uri.startswith(("http://", "https://")) else 1)

        self.sweep_id = sweep_id
        self._creation_lock = creation_lock
        self._theirs: set[str] = set()  # variants whose child another process created (and logs)
        self._read_children(SweepView())  # nothing known until the view is read, after the parent
        kind, value = EXPERIMENT_KIND
        self.client = tracking_client(tracking_uri, lock_retry_delays)
        with one_creator(tracking_uri):  # a new experiment, made once
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=_artifact_location(tracking_uri), tags={kind: value})
        if exp is not None:
            self.experiment_id = exp.experiment_id
            if kind not in exp.tags:  # an experiment made before doodl set it (a kind chosen by hand stays)
                self.client.set_experiment_tag(self.experiment_id, kind, value)
        self.parent_id = self._find_or_create_parent()
        self._read_children()

    def _read_children(self, view: SweepView | None = None) -> None:
        view = view or read_view(self.client, self.experiment_id, self.sweep_id)
        self.children, self.groups, self.logged = view.children, view.groups, view.logged
        self.reduction_logged = view.reduction_logged

    @contextlib.contextmanager
    def _creating(self):
        """Hold the sweep's run-creation lock for the body, with the view read again first
        when another process held the lock since this sink last did."""
        if self._creation_lock is None:
            yield
            return
        from doodl.orchestrator.store import LeaseHeld

        with contextlib.ExitStack() as stack:
            try:
                stale = stack.enter_context(self._creation_lock.hold())
            except LeaseHeld as exc:
                raise TrackingBusy(f"another process creates this sweep's MLflow runs: {exc}") from None
            if stale:
                known = set(self.children)
                self._read_children()
                self._theirs |= set(self.children) - known
            yield

    def _role_filter(self, role: str) -> str:
        return f"tags.`{TAG_SWEEP}` = '{self.sweep_id}' and tags.`{TAG_ROLE}` = '{role}'"

    def merge_duplicates(self) -> int:
        """Delete duplicate parent and child runs of this sweep (left by two drivers that ran
        at once before sweeps had a lease): per variant the fully logged, earliest child is
        kept, and the earliest parent; kept children are re-pointed at the kept parent.
        Returns how many runs were deleted."""
        with self._creating():
            return self._merge_duplicates()

    def _merge_duplicates(self) -> int:
        deleted = 0
        parents = sorted(self._search(self._role_filter("parent")), key=_keep_order)
        self.parent_id = parents[0].info.run_id if parents else self.parent_id
        for extra in parents[1:]:
            self.client.delete_run(extra.info.run_id)
            deleted += 1
        by_variant: dict[str, list] = {}
        for run in self._search(self._role_filter("child")):
            by_variant.setdefault(run.data.tags.get(TAG_RUN), []).append(run)
        for runs in by_variant.values():
            keep, *extra = sorted(runs, key=_keep_order)
            for run in extra:
                self.client.delete_run(run.info.run_id)
                deleted += 1
            if keep.data.tags.get("mlflow.parentRunId") != self.parent_id:
                self.client.set_tag(keep.info.run_id, "mlflow.parentRunId", self.parent_id)
        self._read_children()
        return deleted

    def _look_up_children(self, run_ids: list[str]) -> None:
        """Find the children of ``run_ids`` made since the view was read (by another process:
        the training driver logs units while ``doodl reduce`` runs), one search per run."""
        for rid in run_ids:
            found = sorted(self._search(f"{self._role_filter('child')} and tags.`{TAG_RUN}` = '{rid}'"),
                           key=_keep_order)
            if found:
                self.children[rid] = found[0].info.run_id
                if found[0].data.tags.get(TAG_LOGGED) == "1":
                    self.logged.add(rid)

    def _search(self, filter_string: str):
        return search_all(self.client, [self.experiment_id], filter_string)

    def _find_or_create_parent(self) -> str:
        found = sorted(self._search(self._role_filter("parent")), key=_keep_order)
        if found:
            return found[0].info.run_id
        with self._creating():
            found = sorted(self._search(self._role_filter("parent")), key=_keep_order)
            if found:  # another process made it while this one waited
                return found[0].info.run_id
            run = self.client.create_run(
                self.experiment_id, run_name=self.sweep_id, tags={TAG_SWEEP: self.sweep_id, TAG_ROLE: "parent"}
            )
            return run.info.run_id

    def log_parent(self, params: dict, metrics: dict | None = None, finished: bool = False) -> None:
        """Sweep-level params (logged once; MLflow refuses changed values) and metrics."""
        from mlflow.entities import Metric, Param

        existing = self.client.get_run(self.parent_id).data.params
        new = [Param(k, param_text(v)) for k, v in params.items() if k not in existing]
        now = int(time.time() * 1000)
        mets = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        if new or mets:
            self.client.log_batch(self.parent_id, metrics=mets, params=new)
        if finished:
            self.client.set_terminated(self.parent_id, "FINISHED")

    def _each(self, fn, items: list) -> None:
        """``fn`` over ``items``: on :attr:`workers` threads against a tracking server (its
        calls wait on the network and on the server's own workers), in order otherwise (a
        SQLite database takes one writer at a time). The first error is raised after the
        calls already started have finished; what they logged stays logged."""
        if self.workers <= 1 or len(items) <= 1:
            for item in items:
                fn(item)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers, thread_name_prefix="doodl-mlflow") as pool:
            for future in [pool.submit(fn, item) for item in items]:
                future.result()

    def log_variants(self, variants: Iterable[dict], trajectories: pa.Table, finals: pa.Table,
                     snapshots: pa.Table | None = None, varying: list[str] = ()) -> int:
        """Log every not-yet-logged variant among ``variants`` (rows of variants.parquet).

        ``trajectories``, ``finals`` and ``snapshots`` (without ``theta``: the held-out
        curves) hold their committed rows; ``varying``: the sweep's axes that vary (run names).
        Returns how many child runs were logged now. A variant whose child another process
        created meanwhile is left to that process.
        """
        from mlflow.entities import Metric, Param, RunTag

        todo = [v for v in variants if v["run_id"] not in self.logged]
        varying = list(varying)
        if any(v["run_id"] not in self.children for v in todo):
            with self._creating():
                self._each(lambda cfg: self._create_child(cfg, varying),
                           [v for v in todo if v["run_id"] not in self.children])
            todo = [v for v in todo if v["run_id"] not in self.logged and v["run_id"] not in self._theirs]
        if not todo:
            return 0
        traj = _rows_by_run(trajectories, CURVES)
        held_out = _rows_by_run(snapshots, HELD_OUT_CURVES) if snapshots is not None else {}
        fin = {r["run_id"]: r for r in finals.to_pylist()}
        now = int(time.time() * 1000)

        def log_one(cfg: dict) -> None:
            rid = cfg["run_id"]
            steps, cols = traj[rid]
            keep = subsample_steps(len(steps))
            metrics = [Metric(name, float(cols[name][i]), now, int(steps[i]))
                       for name in cols for i in keep if np.isfinite(cols[name][i])]
            rec_steps, rec = held_out.get(rid, (np.empty(0), {}))
            for name, values in rec.items():
                at = np.flatnonzero(np.isfinite(values))
                metrics += [Metric(name, float(values[i]), now, int(rec_steps[i])) for i in at[subsample_steps(len(at))]]
            final = fin[rid]
            metrics += [Metric(k, float(final[k]), now, int(final["steps"]))
                        for k in FINAL_METRICS
                        if final[k] is not None and np.isfinite(final[k])]
            child = self.children[rid]
            params = [Param(k, param_text(cfg[k])) for k in PARAM_FIELDS] + [Param("unit_id", cfg["unit_id"])]
            tags = [RunTag("doodl.status", final["status"]), RunTag(TAG_LOGGED, "1")]
            # params, metrics and the logged tag in one call; the tag is committed last, so a run
            # without it is logged again
            self.client.log_batch(child, metrics=metrics, params=params, tags=tags)
            self.client.set_terminated(child, _RUN_STATUS.get(final["status"], "FAILED"))
            self.logged.add(rid)

        self._each(log_one, todo)
        return len(todo)

    def _create_child(self, cfg: dict, varying: list[str]) -> None:
        """Create the variant's child run (tags only; it is logged after the lock is let go)."""
        rid = cfg["run_id"]
        self.children[rid] = self.client.create_run(  # one key per thread: dict assignment is atomic
            self.experiment_id, run_name=run_name(cfg, varying),
            tags={"mlflow.parentRunId": self.parent_id, TAG_SWEEP: self.sweep_id, TAG_RUN: rid,
                  TAG_GROUP: cfg["group_id"], TAG_GROUP_LABEL: group_name(cfg, varying),
                  TAG_ROLE: "child"}).info.run_id

    def ensure_group_runs(self, groups: dict[str, list[dict]], varying: list[str]) -> None:
        """A run per group (tag ``doodl.role = group``, a child of the parent, the group's
        config as params), created once: it carries the group's results of every analysis,
        so they are logged once and compare group against group in MLflow's runs table."""
        if all(gid in self.groups for gid in groups):
            return
        with self._creating():
            self._create_group_runs(groups, varying)

    def _create_group_runs(self, groups: dict[str, list[dict]], varying: list[str]) -> None:
        from mlflow.entities import Param

        for gid, rows in groups.items():
            if gid in self.groups:
                continue
            cfg = rows[0]
            run = self.client.create_run(
                self.experiment_id, run_name=group_run_name(cfg, varying),
                tags={"mlflow.parentRunId": self.parent_id, TAG_SWEEP: self.sweep_id, TAG_GROUP: gid,
                      TAG_GROUP_LABEL: group_name(cfg, varying), TAG_ROLE: "group"})
            params = [Param(k, param_text(cfg[k])) for k in PARAM_FIELDS if k != "seed"] + [
                Param("n_seeds", str(len(rows)))]
            self.client.log_batch(run.info.run_id, params=params)
            self.client.set_terminated(run.info.run_id, "FINISHED")
            self.groups[gid] = run.info.run_id

    def analysis_pending(self, name: str, row: dict, settings_key: str) -> bool:
        """Whether any of the group's runs in MLflow (its group run, its seeds) lacks the
        ``name`` results computed with ``settings_key``."""
        logged = self.reduction_logged[name]
        group = self.groups.get(row["group_id"])
        return ((group is not None and logged.get(group) != settings_key)
                or any(logged.get(self.children[r]) != settings_key
                       for r in row.get("run_ids") or [] if r in self.children))

    def log_group_results(self, name: str, row: dict, runs: list[dict], pictures: dict[str, str],
                          settings_key: str) -> int:
        """Log one group's results of analysis ``name``: what belongs to the group (its
        metrics, tags, curves and pictures, or its error) once, on the group run; what
        belongs to a seed (its own verdict, spectrum or curves) on that seed's run.

        Runs already logged with the same ``settings_key`` are skipped; seeds not in MLflow
        yet (training not logged) are left for a later run. Returns how many runs were
        logged now.
        """
        from mlflow.entities import RunTag

        now = int(time.time() * 1000)
        self._look_up_children([r["run_id"] for r in runs if r["run_id"] not in self.children])
        logged = self.reduction_logged[name]
        key_tag = RunTag(REGISTRY[name].tag, settings_key)
        done = 0
        group = self.groups.get(row["group_id"])
        if group is not None and logged.get(group) != settings_key:
            if row.get("error") is None:
                values, tags, curves = group_results(name, row)
            else:
                values, tags, curves = {}, {f"doodl.{name}_error": row["error"][:500]}, []
            self.client.log_batch(group, metrics=metrics_of(values, curves, now),
                                  tags=[key_tag, *(RunTag(k, v) for k, v in tags.items())])
            for path in pictures.values():
                self.client.log_artifact(group, path, artifact_path=name)
            logged[group] = settings_key
            done += 1
        seeds = [(self.children[r["run_id"]], r) for r in runs
                 if r["run_id"] in self.children and logged.get(self.children[r["run_id"]]) != settings_key]

        def log_seed(item) -> None:
            child, run = item
            values, tags, curves = seed_results(name, run) if row.get("error") is None else ({}, {}, [])
            self.client.log_batch(child, metrics=metrics_of(values, curves, now),
                                  tags=[key_tag, *(RunTag(k, v) for k, v in tags.items())])
            logged[child] = settings_key

        self._each(log_seed, seeds)  # a seed's results in one call; seeds side by side on a server
        return done + len(seeds)

    def log_reduction_summary(self, name: str, table_rows: list[dict], files: list[str],
                              metrics: dict[str, float]) -> None:
        """An analysis's all-groups table (CSV, readable in the UI), its files (Parquet,
        pictures) under ``reduction/`` and sweep-level metrics, on the parent."""
        import csv
        import io

        from mlflow.entities import Metric

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(REGISTRY[name].table_columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table_rows)
        self.client.log_text(self.parent_id, buf.getvalue(), f"reduction/{name}_groups.csv")
        for path in files:
            self.client.log_artifact(self.parent_id, path, artifact_path="reduction")
        now = int(time.time() * 1000)
        mets = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and np.isfinite(v)]
        if mets:
            self.client.log_batch(self.parent_id, metrics=mets)


def _keep_order(run) -> tuple:
    """Sort key: of duplicate runs, the fully logged one first, then the earliest."""
    return (run.data.tags.get(TAG_LOGGED) != "1", run.info.start_time or 0, run.info.run_id)


def _artifact_location(tracking_uri: str) -> str | None:
    """For a SQLite database, keep artifacts beside it (``mlartifacts/`` in its directory)
    rather than in ``./mlruns`` of whatever directory doodl ran from; a tracking server
    decides for itself (None)."""
    from pathlib import Path

    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri[len("sqlite:///"):])
    return (db.resolve().parent / "mlartifacts").as_uri()


def _rows_by_run(table: pa.Table, columns) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Split rows into per-run numpy columns (those of ``columns`` present) ordered by step."""
    table = table.sort_by([("run_id", "ascending"), ("step", "ascending")])
    run_ids = table.column("run_id").to_numpy(zero_copy_only=False)
    steps = table.column("step").to_numpy()
    cols = {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns
            if c in table.column_names}
    bounds = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1], True])
    out = {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[run_ids[a]] = (steps[a:b], {c: v[a:b] for c, v in cols.items()})
    return out
