"""The MLflow view of a sweep, written only by the driver.

One experiment per sweep name, one parent run per sweep (tag ``doodl.sweep_id``), one
child run per variant (tag ``doodl.run_id``). A child's params, metrics and its
``doodl.logged`` tag go in a single ``log_batch`` call, which the SQL stores apply in one
transaction: a child is either fully logged or will be logged again, and re-running a
sweep finds the existing runs by tag instead of creating new ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from workers.config import axes, later_labels

DEFAULT_TRACKING_URI = "sqlite:///doodl-mlflow.db"
# Seconds to wait before each retry of a call that found the SQLite database locked (by
# another writer). Each attempt itself waits up to 20 s for the lock (MLflow's busy_timeout).
LOCK_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
log = logging.getLogger("doodl.mlflow")
# per curve: enough to compare runs in the UI (every step is in the store); MLflow writes a
# row per point and logging time grows with them (about 0.1 ms a point with SQLite here)
CURVE_POINTS = 50
CURVES = ("train_loss", "train_acc", "grad_norm", "lr")
HELD_OUT_CURVES = ("test_loss", "test_acc")  # measured at recorded steps only
TAG_SWEEP, TAG_RUN, TAG_GROUP, TAG_ROLE, TAG_LOGGED = (
    "doodl.sweep_id",
    "doodl.run_id",
    "doodl.group_id",
    "doodl.role",
    "doodl.logged",
)
# MLflow 3's UI opens an experiment without a kind on its GenAI overview (empty trace charts);
# this kind makes it open on the runs
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# per analysis, the tag holding the settings a child's results were logged with
ANALYSIS_TAGS = {"morse": "doodl.morse", "taxonomy": "doodl.taxonomy", "koopman": "doodl.koopman", "ntk": "doodl.ntk"}
TABLE_COLUMNS = {
    "morse": ("group_id", "label", "n_runs", "coordinates", "no_verdict", "n_outcomes", "outcome_sizes", "n_attractors",
              "ari", "outcome_accuracy", "outcome_chance", "baseline_accuracy", "versus_baseline", "self_basin_accuracy",
              "self_basin_chance", "n_transit", "n_undecided", "n_morse_sets", "n_unresolved", "cm_n_morse_sets",
              "cm_n_attractors", "cm_boundary", "data_n_attractors", "data_agrees", "fidelity", "n_pairs", "total_s",
              "warnings", "error"),
    "taxonomy": ("group_id", "label", "phase", "n_seeds", "train_loss", "train_acc", "test_acc", "hessian_top",
                 "hessian_trace", "mc", "line_barrier", "cka", "l2", "total_s", "threshold_train_loss",
                 "threshold_mc_tolerance", "threshold_cka", "error"),
    "koopman": ("group_id", "label", "koopman_class", "n_runs", "n_spectra", "n_pairs", "modulus_1", "modulus_2",
                "modulus_3", "spread", "seconds", "warnings", "error"),
    "ntk": ("group_id", "label", "n_runs", "n_probe", "transition_step", "transition_steps", "final_distance_init",
            "seconds", "error"),
}
TAXONOMY_METRICS = ("train_loss", "test_acc", "hessian_top", "hessian_trace", "mc", "line_mc", "line_barrier", "cka",
                    "l2")
# config fields shown as MLflow params (the rest are in variants.parquet): every grid axis
PARAM_FIELDS = (
    "dataset", "test_fraction", "split_seed", "model", "optimizer", "steps", "momentum", "record_every",
    "projection_dim", "seed", *axes(),
)


def subsample_steps(n_steps: int, points: int = CURVE_POINTS) -> np.ndarray:
    """Indices ``0..n_steps-1`` thinned to at most ``points``, always keeping the last."""
    if n_steps <= points:
        return np.arange(n_steps)
    return np.unique(np.linspace(0, n_steps - 1, points).round().astype(np.int64))


def run_name(cfg: dict) -> str:
    """A readable child-run name; the id keeps names of equal configs apart."""
    later = "".join(f"-{label}{value:g}" if isinstance(value, float) else f"-{label}{value}"
                    for label, value in later_labels(cfg))
    return (
        f"w{cfg['width']}-d{cfg['depth']}-noise{cfg['label_noise']:g}-frac{cfg['train_fraction']:g}"
        f"-lr{cfg['lr']:g}-bs{cfg['batch_size']}{later}-s{cfg['seed']}-{cfg['run_id'][:6]}"
    )


def _locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


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


class MlflowSink:
    """Parent and child runs of one sweep in one experiment; idempotent by tags."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_id: str, lock_retry_delays=LOCK_RETRY_DELAYS):
        from mlflow.tracking import MlflowClient

        self.client = _RetryOnLock(MlflowClient(tracking_uri=tracking_uri), lock_retry_delays)
        self.sweep_id = sweep_id
        exp = self.client.get_experiment_by_name(experiment)
        kind, value = EXPERIMENT_KIND
        if exp is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=_artifact_location(tracking_uri), tags={kind: value})
        else:
            self.experiment_id = exp.experiment_id
            if kind not in exp.tags:  # an experiment made before doodl set it (a kind chosen by hand stays)
                self.client.set_experiment_tag(self.experiment_id, kind, value)
        self.parent_id = self._find_or_create_parent()
        self._read_children()

    def _read_children(self) -> None:
        self.children: dict[str, str] = {}
        self.groups: dict[str, str] = {}  # group id -> its group run
        self.logged: set[str] = set()
        # analysis -> MLflow run id (a seed's or a group's) -> settings key of the results it holds
        self.reduction_logged: dict[str, dict[str, str]] = {name: {} for name in ANALYSIS_TAGS}
        runs = list(self._search(f"tags.`{TAG_SWEEP}` = '{self.sweep_id}'"))
        # of duplicates (two drivers at once, before leases), the one merge_duplicates keeps wins
        for run in sorted(runs, key=_keep_order, reverse=True):
            role = run.data.tags.get(TAG_ROLE)
            if role == "child":
                rid = run.data.tags.get(TAG_RUN)
                self.children[rid] = run.info.run_id
                if run.data.tags.get(TAG_LOGGED) == "1":
                    self.logged.add(rid)
            elif role == "group":
                self.groups[run.data.tags.get(TAG_GROUP)] = run.info.run_id
        mine = set(self.children.values()) | set(self.groups.values())
        for run in runs:
            if run.info.run_id in mine:
                for name, tag in ANALYSIS_TAGS.items():
                    if tag in run.data.tags:
                        self.reduction_logged[name][run.info.run_id] = run.data.tags[tag]

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
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=filter_string, max_results=1000, page_token=token
            )
            yield from page
            token = page.token
            if not token:
                return

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
        new = [Param(k, str(v)) for k, v in params.items() if k not in existing]
        now = int(time.time() * 1000)
        mets = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        if new or mets:
            self.client.log_batch(self.parent_id, metrics=mets, params=new)
        if finished:
            self.client.set_terminated(self.parent_id, "FINISHED")

    def log_variants(self, variants: Iterable[dict], trajectories: pa.Table, finals: pa.Table,
                     snapshots: pa.Table | None = None) -> int:
        """Log every not-yet-logged variant among ``variants`` (rows of variants.parquet).

        ``trajectories``, ``finals`` and ``snapshots`` (without ``theta``: the held-out
        curves) hold their committed rows.
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
        for cfg in todo:
            rid = cfg["run_id"]
            steps, cols = traj[rid]
            keep = subsample_steps(len(steps))
            metrics = [
                Metric(name, float(cols[name][i]), now, int(steps[i]))
                for name in cols
                for i in keep
                if np.isfinite(cols[name][i])
            ]
            rec_steps, rec = held_out.get(rid, (np.empty(0), {}))
            for name, values in rec.items():
                at = np.flatnonzero(np.isfinite(values))
                metrics += [Metric(name, float(values[i]), now, int(rec_steps[i])) for i in at[subsample_steps(len(at))]]
            final = fin[rid]
            metrics += [
                Metric(k, float(final[k]), now, int(final["steps"]))
                for k in ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc")
                if final[k] is not None and np.isfinite(final[k])
            ]
            child = self.children.get(rid)
            if child is None:
                child = self.client.create_run(
                    self.experiment_id,
                    run_name=run_name(cfg),
                    tags={
                        "mlflow.parentRunId": self.parent_id,
                        TAG_SWEEP: self.sweep_id,
                        TAG_RUN: rid,
                        TAG_GROUP: cfg["group_id"],
                        TAG_ROLE: "child",
                    },
                ).info.run_id
                self.children[rid] = child
            params = [Param(k, str(cfg[k])) for k in PARAM_FIELDS] + [Param("unit_id", cfg["unit_id"])]
            tags = [RunTag("doodl.status", final["status"]), RunTag(TAG_LOGGED, "1")]
            self.client.log_batch(child, metrics=metrics, params=params, tags=tags)
            self.client.set_terminated(child, "FINISHED" if final["status"] == "ok" else "FAILED")
            self.logged.add(rid)
        return len(todo)


    def ensure_group_runs(self, groups: dict[str, list[dict]], labels: dict[str, str]) -> None:
        """A run per group (tag ``doodl.role = group``, a child of the parent, the group's
        config as params), created once: it carries the group's results of every analysis,
        so they are logged once and compare group against group in MLflow's runs table."""
        from mlflow.entities import Param

        for gid, rows in groups.items():
            if gid in self.groups:
                continue
            cfg = rows[0]
            run = self.client.create_run(
                self.experiment_id, run_name=f"group {labels.get(gid, gid)}",
                tags={"mlflow.parentRunId": self.parent_id, TAG_SWEEP: self.sweep_id, TAG_GROUP: gid,
                      TAG_ROLE: "group"})
            params = [Param(k, str(cfg[k])) for k in PARAM_FIELDS if k != "seed"] + [Param("n_seeds", str(len(rows)))]
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
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        logged = self.reduction_logged[name]
        key_tag = RunTag(ANALYSIS_TAGS[name], settings_key)
        done = 0
        group = self.groups.get(row["group_id"])
        if group is not None and logged.get(group) != settings_key:
            if row.get("error") is None:
                values, tags, curves = _group_results(name, row)
            else:
                values, tags, curves = {}, {f"doodl.{name}_error": row["error"][:500]}, []
            self.client.log_batch(group, metrics=_metrics(values, curves, now),
                                  tags=[key_tag, *(RunTag(k, v) for k, v in tags.items())])
            for path in pictures.values():
                self.client.log_artifact(group, path, artifact_path=name)
            logged[group] = settings_key
            done += 1
        for run in runs:
            child = self.children.get(run["run_id"])
            if child is None or logged.get(child) == settings_key:
                continue
            values, tags, curves = _seed_results(name, run) if row.get("error") is None else ({}, {}, [])
            self.client.log_batch(child, metrics=_metrics(values, curves, now),
                                  tags=[key_tag, *(RunTag(k, v) for k, v in tags.items())])
            logged[child] = settings_key
            done += 1
        return done

    def log_reduction_summary(self, name: str, table_rows: list[dict], files: list[str],
                              metrics: dict[str, float]) -> None:
        """An analysis's all-groups table (CSV, readable in the UI), its files (Parquet,
        pictures) under ``reduction/`` and sweep-level metrics, on the parent."""
        import csv
        import io

        from mlflow.entities import Metric

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(TABLE_COLUMNS[name]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table_rows)
        self.client.log_text(self.parent_id, buf.getvalue(), f"reduction/{name}_groups.csv")
        for path in files:
            self.client.log_artifact(self.parent_id, path, artifact_path="reduction")
        now = int(time.time() * 1000)
        mets = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and np.isfinite(v)]
        if mets:
            self.client.log_batch(self.parent_id, metrics=mets)


def _metrics(values: dict, curves: list[tuple[str, int, float]], now: int) -> list:
    from mlflow.entities import Metric

    out = [Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and np.isfinite(float(v))]
    return out + [Metric(k, float(v), now, int(step)) for k, step, v in curves if v is not None and np.isfinite(v)]


def _curves(name: str, steps, values) -> list[tuple[str, int, float]]:
    return [(name, step, v) for step, v in zip(steps or [], values or [])]


def _group_results(name: str, row: dict) -> tuple[dict, dict[str, str], list]:
    """What a group run shows of one analysis: metrics, tags, curves (name, step, value).
    Ids that are not stable between reductions (Morse sets, Koopman classes) are tags."""
    if name == "morse":
        # below the minimum of runs the verdict columns are null: no metric, and a tag says why
        tags = {"doodl.morse_coordinates": str(row["coordinates"]),
                "doodl.morse_verdict": row.get("no_verdict") or f"{row.get('versus_baseline')} the baseline"}
        return ({"n_morse_sets": row["n_morse_sets"], "n_attractors": row.get("n_attractors"),
                 "n_unresolved_morse_sets": row["n_unresolved"], "n_outcomes": row.get("n_outcomes"),
                 "outcome_ari": row.get("ari"), "outcome_accuracy": row.get("outcome_accuracy"),
                 "outcome_chance": row.get("outcome_chance"), "outcome_baseline_accuracy": row.get("baseline_accuracy"),
                 "self_basin_accuracy": row.get("self_basin_accuracy"), "self_basin_chance": row.get("self_basin_chance"),
                 "outcome_undecided": row.get("n_undecided"), "fidelity": row.get("fidelity")}, tags, [])
    if name == "taxonomy":
        return ({k: row.get(k) for k in TAXONOMY_METRICS},
                {"doodl.phase": str(row["phase"]), **{f"doodl.{k}": str(row[k]) for k in
                 ("threshold_train_loss", "threshold_mc_tolerance", "threshold_cka")}}, [])
    if name == "koopman":
        tags = {"doodl.koopman_class": str(row["koopman_class"])} if row.get("koopman_class") is not None else {}
        return ({**{f"koopman_modulus_{k}": row.get(f"modulus_{k}") for k in (1, 2, 3)},
                 "koopman_spread": row.get("spread")}, tags, [])
    return ({"ntk_transition_step": row.get("transition_step")}, {},
            _curves("ntk_distance_init", row.get("steps"), row.get("distance_init"))
            + _curves("ntk_velocity", row.get("steps"), row.get("velocity")))


def _seed_results(name: str, run: dict) -> tuple[dict, dict[str, str], list]:
    """What a seed's run shows of one analysis: its own values only."""
    if name == "morse":
        values = {"final_in_attractor": run.get("in_attractor"), "outcome_correct": run.get("outcome_correct"),
                  "outcome_baseline_correct": run.get("baseline_correct")}
        return (values, {"doodl.itinerary": " > ".join(str(u) for u in run.get("itinerary") or []) or "none",
                         "doodl.end_attractor": str(run.get("end_attractor")), "doodl.outcome": str(run.get("outcome"))},
                [])
    if name == "taxonomy":
        return {k: run.get(k) for k in ("hessian_top", "hessian_trace")}, {}, []
    if name == "koopman":
        return {"koopman_run_modulus_1": run.get("modulus_1")}, {}, []
    return ({"ntk_transition_step": run.get("transition_step")}, {},
            _curves("ntk_distance_init", run.get("steps"), run.get("distance_init"))
            + _curves("ntk_velocity", run.get("steps"), run.get("velocity")))


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
