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
    "morse": ("group_id", "label", "n_runs", "coordinates", "basin_accuracy", "chance", "basin_accuracy_start",
              "n_transit", "n_undecided", "n_morse_sets", "n_attractors", "n_unresolved", "cm_n_morse_sets", "cm_n_attractors",
              "cm_boundary", "data_n_attractors", "data_agrees", "fidelity", "n_pairs", "total_s", "warnings", "error"),
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
        self.logged: set[str] = set()
        # analysis -> run_id -> settings key of the results logged on that child
        self.reduction_logged: dict[str, dict[str, str]] = {name: {} for name in ANALYSIS_TAGS}
        for run in sorted(self._search(self._role_filter("child")), key=_keep_order, reverse=True):
            rid = run.data.tags.get(TAG_RUN)
            self.children[rid] = run.info.run_id  # of duplicates, the one merge_duplicates keeps wins
            if run.data.tags.get(TAG_LOGGED) == "1":
                self.logged.add(rid)
            for name, tag in ANALYSIS_TAGS.items():
                if tag in run.data.tags:
                    self.reduction_logged[name][rid] = run.data.tags[tag]

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


    def log_group_morse(self, row: dict, runs: list[dict], pictures: dict[str, str], settings_key: str) -> int:
        """Log one group's Morse results on each of its children: the group's held-out basin
        accuracy and chance level and its graph's size as metrics, the run's own verdict
        (``basin_correct``; its itinerary and end attractor as tags, since Morse set ids are
        not stable), and the group's pictures (local files) under ``morse/``.

        Children already logged with the same ``settings_key`` are skipped; children not
        in MLflow yet (training not logged) are left for a later run. Returns how many
        children were logged now.
        """
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        done = 0
        for run, child in self._pending("morse", runs, settings_key):
            metrics = []
            tags = [RunTag(ANALYSIS_TAGS["morse"], settings_key)]
            if row.get("error") is None:
                values = {"n_morse_sets": row["n_morse_sets"], "n_attractors": row["n_attractors"],
                          "n_unresolved_morse_sets": row["n_unresolved"],
                          "group_basin_accuracy": row["basin_accuracy"], "group_basin_chance": row["chance"],
                          "group_basin_accuracy_start": row["basin_accuracy_start"],
                          "group_basin_undecided": row.get("n_undecided"),
                          "group_fidelity": row["fidelity"], "final_in_attractor": run.get("in_attractor")}
                if run.get("basin_correct") is not None:
                    values["basin_correct"] = run["basin_correct"]
                metrics = [Metric(k, float(v), now, 0) for k, v in values.items()
                           if v is not None and np.isfinite(float(v))]
                # Morse set ids are not stable between reductions: tags, never metrics
                tags += [RunTag("doodl.morse_coordinates", str(row["coordinates"])),
                         RunTag("doodl.itinerary", " > ".join(str(u) for u in run.get("itinerary") or []) or "none"),
                         RunTag("doodl.end_attractor", str(run.get("end_attractor")))]
            else:
                tags.append(RunTag("doodl.morse_error", row["error"][:500]))
            self.client.log_batch(child, metrics=metrics, tags=tags)
            for path in pictures.values():
                self.client.log_artifact(child, path, artifact_path="morse")
            self.reduction_logged["morse"][run["run_id"]] = settings_key
            done += 1
        return done

    def _pending(self, name: str, runs: list[dict], settings_key: str):
        """(run, child run id) of the runs whose child exists and lacks these results."""
        logged = self.reduction_logged[name]
        for run in runs:
            child = self.children.get(run["run_id"])
            if child is not None and logged.get(run["run_id"]) != settings_key:
                yield run, child

    def analysis_logged(self, name: str) -> dict[str, str]:
        """run_id -> settings key of the ``name`` results already on that child."""
        return self.reduction_logged[name]

    def log_group_taxonomy(self, row: dict, runs: list[dict], settings_key: str) -> int:
        """Log one group's taxonomy on each of its children: the group's metrics and phase
        (tag ``doodl.phase``), the thresholds, and the run's own Hessian figures."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        done = 0
        for run, child in self._pending("taxonomy", runs, settings_key):
            metrics, tags = [], [RunTag(ANALYSIS_TAGS["taxonomy"], settings_key)]
            if row.get("error") is None:
                metrics = [Metric(f"group_{k}", float(row[k]), now, 0) for k in TAXONOMY_METRICS
                           if row.get(k) is not None and np.isfinite(row[k])]
                metrics += [Metric(k, float(run[k]), now, 0) for k in ("hessian_top", "hessian_trace")
                            if run.get(k) is not None and np.isfinite(run[k])]
                tags += [RunTag("doodl.phase", row["phase"])]
                tags += [RunTag(f"doodl.{k}", str(row[k])) for k in
                         ("threshold_train_loss", "threshold_mc_tolerance", "threshold_cka")]
            else:
                tags.append(RunTag("doodl.taxonomy_error", row["error"][:500]))
            self.client.log_batch(child, metrics=metrics, tags=tags)
            self.reduction_logged["taxonomy"][run["run_id"]] = settings_key
            done += 1
        return done

    def log_group_koopman(self, row: dict, runs: list[dict], settings_key: str) -> int:
        """Log one group's Koopman spectrum on each of its children: the group's leading
        eigenvalue moduli and seed spread, the run's own leading modulus, and the group's
        equivalence class as the tag ``doodl.koopman_class`` (class numbers depend on which
        groups a sweep holds: a tag, never a metric)."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        done = 0
        for run, child in self._pending("koopman", runs, settings_key):
            metrics, tags = [], [RunTag(ANALYSIS_TAGS["koopman"], settings_key)]
            if row.get("error") is None:
                values = {f"koopman_modulus_{k}": row.get(f"modulus_{k}") for k in (1, 2, 3)}
                values.update(koopman_spread=row.get("spread"), koopman_run_modulus_1=run.get("modulus_1"))
                metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and np.isfinite(v)]
                if row.get("koopman_class") is not None:
                    tags.append(RunTag("doodl.koopman_class", str(row["koopman_class"])))
            else:
                tags.append(RunTag("doodl.koopman_error", row["error"][:500]))
            self.client.log_batch(child, metrics=metrics, tags=tags)
            self.reduction_logged["koopman"][run["run_id"]] = settings_key
            done += 1
        return done

    def log_group_ntk(self, row: dict, runs: list[dict], pictures: dict[str, str], settings_key: str) -> int:
        """Log one group's NTK evolution on each of its children: the run's own curves
        (``ntk_distance_init``, ``ntk_velocity`` at its recorded steps) and transition step,
        the group's median transition, and the group's picture under ``ntk/``."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        done = 0
        for run, child in self._pending("ntk", runs, settings_key):
            metrics, tags = [], [RunTag(ANALYSIS_TAGS["ntk"], settings_key)]
            if row.get("error") is None:
                for name, key in (("ntk_distance_init", "distance_init"), ("ntk_velocity", "velocity")):
                    metrics += [Metric(name, float(v), now, int(step)) for step, v in
                                zip(run.get("steps") or [], run.get(key) or []) if v is not None and np.isfinite(v)]
                single = {"ntk_transition_step": run.get("transition_step"),
                          "group_ntk_transition_step": row.get("transition_step")}
                metrics += [Metric(k, float(v), now, 0) for k, v in single.items() if v is not None]
            else:
                tags.append(RunTag("doodl.ntk_error", row["error"][:500]))
            self.client.log_batch(child, metrics=metrics, tags=tags)
            for path in pictures.values():
                self.client.log_artifact(child, path, artifact_path="ntk")
            self.reduction_logged["ntk"][run["run_id"]] = settings_key
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
