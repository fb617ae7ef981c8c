"""Early outcome prediction of one group of a sweep, as a Ray task (plain data in and out),
and its sweep-wide step (:mod:`doodl.analysis.early_outcome`).

Per group: the runs' outcome modes (their end states clustered without any predictor, as
the Morse graph is graded: :func:`doodl.analysis.dynamics.run_outcomes`), and at each
fraction of training each run's mode predicted from its early state with the run left out,
beside chance and the loss-curve baseline; each run's early features and its extrapolated
accuracy. Once every group is reduced, the sweep step predicts each run's final test
accuracy from its early features with its whole group left out, and draws predicted
against real by fraction (``early_outcome.png``).
"""

from __future__ import annotations

import time

import numpy as np

from doodl.analysis.early_outcome import (EarlyRun, accuracy_verdict, early_features, extrapolate_accuracy,
                                          predict_outcomes)
from doodl.analysis.registry import error_runs, task_error

METHOD_VERSION = 1
PICTURE = "early_outcome.png"  # sweep-wide: predicted against real final test accuracy, by fraction
PREDICTIONS = "early_predictions"  # sweep-wide table: each run's predicted final test accuracy


def early_for_group(sweep_root_uri: str, group_id: str, unit_ids: list[str], variants: list[dict],
                    settings: dict) -> dict:
    """One group's outcome predictions. ``settings``: the ``reduce.early`` section."""
    started = time.perf_counter()
    run_ids = [v["run_id"] for v in variants]
    fractions = [float(f) for f in settings["fractions"]]
    row: dict = {"group_id": group_id, "run_ids": run_ids, "n_runs": len(variants), "error": None,
                 "fractions": fractions}
    runs = error_runs(group_id, run_ids)
    try:
        early, status = read_early_runs(sweep_root_uri, unit_ids, variants, group_id)
        if not early:
            raise ValueError("no run trained to the end (diverged or stopped)")
        verdicts = [predict_outcomes(early, f) for f in fractions]
        sizes = np.bincount([r.outcome for r in early]).tolist()
        row.update(n_outcomes=len(sizes), outcome_sizes=sizes, outcome_chance=verdicts[0].chance,
                   outcome_accuracy=[_num(v.accuracy) for v in verdicts],
                   outcome_baseline=[_num(v.baseline) for v in verdicts])
        by_id = {r.run_id: k for k, r in enumerate(early)}
        runs = []
        for rid in run_ids:
            k = by_id.get(rid)
            if k is None:
                runs.append({"run_id": rid, "group_id": group_id, "status": status.get(rid, "diverged")})
                continue
            r = early[k]
            runs.append({"run_id": rid, "group_id": group_id, "status": "ok", "outcome": r.outcome,
                         "predicted_outcome": [v.predicted[k] if v.predicted else None for v in verdicts],
                         "final_test_acc": r.final_test_acc,
                         "features": [early_features(r, f).tolist() for f in fractions],
                         "extrapolated_acc": [extrapolate_accuracy(r, f) for f in fractions]})
    except Exception as exc:  # reported per group; the reduction goes on
        row["error"] = task_error(exc)
    row["seconds"] = time.perf_counter() - started
    return {"row": row, "runs": runs, "pictures": {}}


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def read_early_runs(sweep_root_uri: str, unit_ids: list[str], variants: list[dict], group_id: str, *,
                    statuses: tuple[str, ...] = ("ok",), function_space: bool = True
                    ) -> tuple[list[EarlyRun], dict[str, str]]:
    """The group's runs of ``statuses`` as :class:`EarlyRun` (snapshots: with
    ``function_space``, outputs on the probe set when full parameters are recorded; per-step
    curves up to the run's end, NaN after, so a stopped run's fractions are of the full
    length; held-out accuracy; outcome mode, -1 for a run not trained to the end), and
    every run's status."""
    import pyarrow.compute as pc

    from doodl.analysis.dynamics import run_outcomes
    from doodl.analysis.morse_task import read_group_runs
    from doodl.workers import shards

    projected = bool(int(variants[0].get("projection_dim") or 0))
    every = read_group_runs(sweep_root_uri, unit_ids, variants, function_space=function_space and not projected)
    status = {t.run_id: t.status for t in every}
    trajectories = [t for t in every if t.status in statuses and len(t.steps) >= 2]
    if not trajectories:
        return [], status
    finished = [t for t in trajectories if t.status == "ok"]
    outcome = dict(zip([t.run_id for t in finished], run_outcomes(finished).labels)) if finished else {}
    total = int(variants[0]["steps"])
    fs, root = shards.resolve_filesystem(sweep_root_uri)
    wanted = pc.field("run_id").isin([t.run_id for t in trajectories])
    curves = shards.read_units(fs, root, shards.TRAJECTORIES, unit_ids,
                               ["run_id", "step", "train_loss", "train_acc", "grad_norm"], filter=wanted
                               ).sort_by([("run_id", "ascending"), ("step", "ascending")])
    held = shards.read_snapshots(fs, root, unit_ids, ["run_id", "step", "test_acc"], filter=wanted
                                 ).sort_by([("run_id", "ascending"), ("step", "ascending")])
    finals = {f["run_id"]: f for f in shards.read_units(fs, root, shards.FINALS, unit_ids,
                                                       ["run_id", "final_test_acc"], filter=wanted).to_pylist()}
    curve_ids = curves.column("run_id").to_numpy(zero_copy_only=False)
    held_ids = held.column("run_id").to_numpy(zero_copy_only=False)
    out = []
    for t in trajectories:
        c, h = curve_ids == t.run_id, held_ids == t.run_id
        test_acc = dict(zip(held.column("step").to_numpy()[h].tolist(),
                            held.column("test_acc").to_numpy(zero_copy_only=False)[h].tolist()))
        theta = np.asarray(t.theta, dtype=np.float64)
        out.append(EarlyRun(
            t.run_id, group_id, np.asarray(t.steps), t.outputs if t.outputs is not None else theta,
            np.linalg.norm(theta, axis=1), np.linalg.norm(theta - theta[0], axis=1),
            *(_column(curves, name, c, total) for name in ("train_loss", "train_acc", "grad_norm")),
            np.array([_or_nan(test_acc.get(int(s))) for s in t.steps], dtype=np.float64),
            _or_nan(finals.get(t.run_id, {}).get("final_test_acc")), int(outcome.get(t.run_id, -1))))
    return out, status


def _column(table, name: str, mask: np.ndarray, total: int) -> np.ndarray:
    """A run's curve over steps 0..total (NaN past its last step)."""
    values = table.column(name).to_numpy(zero_copy_only=False)[mask].astype(np.float64)
    out = np.full(total + 1, np.nan)
    out[: len(values)] = values[: total + 1]
    return out


def _or_nan(value) -> float:
    return float("nan") if value is None else float(value)


def sweep_step(rstore, groups: dict[str, list[dict]], title: str = ""):
    """Each run's final test accuracy predicted from its early features with its group left
    out, per fraction (``reduction/early_predictions.parquet``), each group's mean absolute
    errors beside chance's and the curve baseline's, and ``early_outcome.png``."""
    from doodl.analysis.schemas import EARLY_PREDICTIONS_SCHEMA

    group_rows, run_rows = (t.to_pylist() for t in rstore.consolidate())
    rows = [r for r in run_rows if r["group_id"] in groups and r.get("features")]
    done = [g for g in group_rows if g["group_id"] in groups and g["error"] is None]
    if not rows or not done:
        return rstore.consolidate()
    fractions = done[0]["fractions"]
    per_run: dict[str, list] = {r["run_id"]: [] for r in rows}
    per_group: dict[str, dict[str, list]] = {g["group_id"]: {"final_acc_mae": [], "final_acc_chance_mae": [],
                                                             "final_acc_baseline_mae": []} for g in done}
    verdicts, predictions = [], []
    y = np.array([_or_nan(r["final_test_acc"]) for r in rows])
    for k, f in enumerate(fractions):
        x = np.array([r["features"][k] for r in rows], dtype=np.float64)
        curve = np.array([r["extrapolated_acc"][k] for r in rows], dtype=np.float64)
        keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
        v = accuracy_verdict(f, [r["run_id"] for r, ok in zip(rows, keep) if ok],
                             [r["group_id"] for r, ok in zip(rows, keep) if ok], x[keep], y[keep], curve[keep])
        verdicts.append(v)
        for r, c in zip(rows, curve):
            p = _num(v.predicted.get(r["run_id"], float("nan")))
            per_run[r["run_id"]].append(p)
            predictions.append({"run_id": r["run_id"], "group_id": r["group_id"], "fraction": f,
                                "final_test_acc": r["final_test_acc"], "predicted_final_acc": p,
                                "extrapolated_acc": _num(c)})
        for gid, cols in per_group.items():
            idx = [i for i, r in enumerate(rows) if r["group_id"] == gid and keep[i]]
            pred = np.array([v.predicted[rows[i]["run_id"]] for i in idx])
            real, base = y[idx], curve[idx]
            rest = np.array([i for i in range(len(rows)) if keep[i] and rows[i]["group_id"] != gid])
            cols["final_acc_mae"].append(_num(np.mean(np.abs(pred - real))) if idx else None)
            cols["final_acc_chance_mae"].append(
                _num(np.mean(np.abs(y[rest].mean() - real))) if idx and len(rest) else None)
            cols["final_acc_baseline_mae"].append(_num(np.mean(np.abs(base - real))) if idx else None)
    rstore.write_table(PREDICTIONS, predictions, EARLY_PREDICTIONS_SCHEMA)
    picture = plot_predictions(rows, per_run, fractions, verdicts, title)
    if picture is not None:
        rstore.write_file(PICTURE, picture)
    columns = {name: {gid: cols[name] for gid, cols in per_group.items()}
               for name in ("final_acc_mae", "final_acc_chance_mae", "final_acc_baseline_mae")}
    return rstore.consolidate(columns)


def plot_predictions(rows: list[dict], per_run: dict[str, list], fractions: list[float], verdicts: list,
                     title: str) -> bytes | None:
    """Predicted against real final test accuracy, one panel per fraction, each run a dot."""
    from doodl.analysis.figures import png, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(fractions), figsize=(3.4 * len(fractions), 3.4), dpi=110, squeeze=False)
    real = [r["final_test_acc"] for r in rows]
    for k, (ax, f) in enumerate(zip(axes[0], fractions)):
        pred = [per_run[r["run_id"]][k] for r in rows]
        pts = [(a, b) for a, b in zip(real, pred) if a is not None and b is not None]
        if pts:
            ax.scatter(*zip(*pts), s=10, alpha=0.7)
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
        v = verdicts[k]
        ax.set_title(f"first {f:.0%}: MAE {v.mae:.3f}\nchance {v.chance_mae:.3f}, curve {v.baseline_mae:.3f}",
                     fontsize=8)
        ax.set_xlabel("real final test accuracy")
        ax.set_ylabel("predicted (group left out)" if k == 0 else "")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    fig.suptitle(f"{title}: final test accuracy from the start of training" if title else
                 "final test accuracy from the start of training", fontsize=10)
    fig.tight_layout()
    return png(fig)
