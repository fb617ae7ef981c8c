"""The MLflow view of a sweep, written only by the driver.

One experiment per sweep name, one parent run per sweep (tag ``doodl.sweep_id``), one
child run per variant (tag ``doodl.run_id``). A child's params, metrics and its
``doodl.logged`` tag go in one ``log_batch`` call; MLflow 3's SQL store commits params,
metrics and tags one after another, the tag last, so a child carrying ``doodl.logged`` is
fully logged and one without it is logged again (after a crash between those commits its
curve points can then appear twice in its history). Re-running a sweep finds the existing
runs by tag instead of creating new ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from doodl.orchestrator.tracking._queries import search_all
from doodl.analysis.registry import REGISTRY
from doodl.orchestrator.tracking._views import (CURVES, HELD_OUT_CURVES, PARAM_FIELDS, group_results,
                                          group_name, group_run_name, metrics_of, param_text, run_name, seed_results,
                                          subsample_steps)
from doodl.orchestrator.tracking.tags import (EXPERIMENT_KIND, TAG_GROUP, TAG_GROUP_LABEL, TAG_LOGGED,
                                        TAG_ROLE, TAG_RUN, TAG_SWEEP)
from doodl.workers.shards import FINAL_METRICS

DEFAULT_TRACKING_URI = "sqlite:///doodl-mlflow.db"
# Seconds to wait before each retry of a call that found the SQLite database locked (by
# another writer). Each attempt itself waits up to 20 s for the lock (MLflow's busy_timeout).
LOCK_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
log = logging.getLogger("doodl.mlflow")
SERVER_WORKERS = 4  # threads logging runs to a tracking server at once


def _fast_sqlite() -> None:
    """Make SQLite tracking databases commit without waiting for the disk each time: WAL
    journal, ``synchronous=NORMAL``. A commit then costs a write to the journal, not an
    fsync. On power loss the last commits can be lost; the MLflow view is rebuilt from the
    store by ``doodl sync``, so doodl trades that for several times faster logging. WAL also
    lets ``mlflow ui`` read while a sweep writes. It is meant for a database on a local disk.
    Registered once per process, for SQLite connections only."""
    global _SQLITE_TUNED
    if _SQLITE_TUNED:
        return
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _tune(dbapi_connection, _record) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    _SQLITE_TUNED = True


_SQLITE_TUNED = False


def _locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


@contextlib.contextmanager
def _one_creator(tracking_uri: str):
    """Hold an exclusive file lock, one per SQLite database, while the body opens it: MLflow
    creates the tables and runs its migrations when it finds none, with no lock of its own
    on that path, so two commands opening one new database at once both migrate it and one
    fails (``table runs already exists``, alembic's "Online migration expected"). With the
    lock the second waits, then finds the tables made. The lock file is in the temporary
    directory, named by the database's absolute path (the database is meant for a local
    disk, as :func:`_fast_sqlite` says), so nothing is left beside it. Other stores are
    opened as they are."""
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not tracking_uri.startswith("sqlite:///") or path in ("", ":memory:"):
        yield
        return
    import fcntl
    import hashlib
    import tempfile

    key = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:16]
    with open(os.path.join(tempfile.gettempdir(), f"doodl-mlflow-create-{key}.lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


class _HandledByDoodl(logging.Filter):
    """Drops MLflow's log record of a locked SQLite database (``mlflow.store.db.utils`` logs
    the error with two tracebacks, about 30 lines, on every attempt, then raises it): doodl
    retries the call and says so in one line, and if it still fails, defers logging in one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not _locked(exc)


def _quiet_mlflow_errors() -> None:
    """Install :class:`_HandledByDoodl` on MLflow's SQL store logger, once per process."""
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _HandledByDoodl) for f in logger.filters):
        logger.addFilter(_HandledByDoodl())


class _RetryOnLock:
    """An MlflowClient whose calls are retried with backoff while SQLite says "database is
    locked". A failed call's transaction was rolled back, so trying it again is safe."""

    def __init__(self, client, delays=LOCK_RETRY_DELAYS):
        self._client = client
        self._delays = tuple(delays)

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            for delay in (*self._delays, None):
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:
                    if delay is None or not _locked(exc):
                        raise
                    log.warning("MLflow database is locked (%s); retrying in %.0f s", name, delay)
                    time.sleep(delay)
            raise AssertionError("unreachable")

        return call


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
                 workers: int | None = None):
        from mlflow.tracking import MlflowClient

        if tracking_uri.startswith("sqlite:"):
            _fast_sqlite()
            _quiet_mlflow_errors()
        self.workers = workers if workers is not None else (
            SERVER_WORKERS if tracking_uri.startswith(("http://", "https://")) else 1)

        self.sweep_id = sweep_id
        kind, value = EXPERIMENT_KIND
        with _one_creator(tracking_uri):  # a new database: its tables, then the experiment, made once
            self.client = _RetryOnLock(MlflowClient(tracking_uri=tracking_uri), lock_retry_delays)
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

    def _read_children(self) -> None:
        view = read_view(self.client, self.experiment_id, self.sweep_id)
        self.children, self.groups, self.logged = view.children, view.groups, view.logged
        self.reduction_logged = view.reduction_logged

    def _role_filter(self, role: str) -> str:
        return f"tags.`{TAG_SWEEP}` = '{self.sweep_id}' and tags.`{TAG_ROLE}` = '{role}'"

    def merge_duplicates(self) -> int:
        """Delete duplicate parent and child runs of this sweep (left by two drivers that ran
        at once before sweeps had a lease): per variant the fully logged, earliest child is
        kept, and the earliest parent; kept children are re-pointed at the kept parent.
        Returns how many runs were deleted."""
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

    def _search(self, filter_string: str):
        return search_all(self.client, [self.experiment_id], filter_string)

    def _find_or_create_parent(self) -> str:
        found = sorted(self._search(self._role_filter("parent")), key=_keep_order)
        if found:
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
        Returns how many child runs were logged now.
        """
        from mlflow.entities import Metric, Param, RunTag

        todo = [v for v in variants if v["run_id"] not in self.logged]
        if not todo:
            return 0
        traj = _rows_by_run(trajectories, CURVES)
        held_out = _rows_by_run(snapshots, HELD_OUT_CURVES) if snapshots is not None else {}
        fin = {r["run_id"]: r for r in finals.to_pylist()}
        now = int(time.time() * 1000)
        varying = list(varying)

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
            child = self.children.get(rid)
            if child is None:
                child = self.client.create_run(
                    self.experiment_id, run_name=run_name(cfg, varying),
                    tags={"mlflow.parentRunId": self.parent_id, TAG_SWEEP: self.sweep_id, TAG_RUN: rid,
                          TAG_GROUP: cfg["group_id"], TAG_GROUP_LABEL: group_name(cfg, varying),
                          TAG_ROLE: "child"}).info.run_id
                self.children[rid] = child  # one key per thread: dict assignment is atomic
            params = [Param(k, param_text(cfg[k])) for k in PARAM_FIELDS] + [Param("unit_id", cfg["unit_id"])]
            tags = [RunTag("doodl.status", final["status"]), RunTag(TAG_LOGGED, "1")]
            # params, metrics and the logged tag in one call; the tag is committed last, so a run
            # without it is logged again
            self.client.log_batch(child, metrics=metrics, params=params, tags=tags)
            self.client.set_terminated(child, "FINISHED" if final["status"] == "ok" else "FAILED")
            self.logged.add(rid)

        self._each(log_one, todo)
        return len(todo)


    def ensure_group_runs(self, groups: dict[str, list[dict]], varying: list[str]) -> None:
        """A run per group (tag ``doodl.role = group``, a child of the parent, the group's
        config as params), created once: it carries the group's results of every analysis,
        so they are logged once and compare group against group in MLflow's runs table."""
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
