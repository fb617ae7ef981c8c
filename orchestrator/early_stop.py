"""The early-stopping rule a sweep trains with (``early_stop:`` in the spec), fitted on a
previous sweep and validated there with its groups left out (``docs/methods.md``, "Early
stopping").

The predictor sweep must be reduced with the ``early`` analysis at the fraction ``at``: its
``reduction/early_runs.parquet`` holds each run's early features and its real final test
accuracy. The rule (:class:`doodl.workers.early_stop.StopRule`) is a ridge regression on all
of them and the threshold that keeps the top ``keep`` share of them. Before it is used, the
same fit with each group left out says how well it does on groups it has not seen: its
mean absolute error beside chance's, how many of the runs it would stop really ended in the
bottom ``1 - keep`` share, and how many of the top 10% it would keep.

A group whose runs were stopped has no taxonomy of its own (two finished seeds are needed).
When the predictor sweep has taxonomy results, its phase is predicted: the phase of the
predictor sweep's group nearest in its runs' mean early features (standardised), validated
there with each group left out beside chance (the commonest phase's share).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from doodl.analysis.early_outcome import RIDGE_ALPHA, accuracy_verdict
from doodl.orchestrator.spec import EarlyStopSpec, SpecError, SweepSpec
from doodl.orchestrator.store import StoreError, SweepStore
from doodl.workers.early_stop import StopRule, fit_stop_rule

TOP = 0.1  # the share of best runs whose recovery the validation reports
# reduction/stopped_phases.parquet: the groups early stopping left with fewer than 2 finished
# runs, and the phase predicted for each (null without a phase model)
STOPPED_PHASES = "stopped_phases"
STOPPED_PHASES_SCHEMA = pa.schema([("group_id", pa.string()), ("n_runs", pa.int32()), ("n_finished", pa.int32()),
                                   ("predicted_phase", pa.string())])


def stop_rule_for(spec: SweepSpec, store: SweepStore) -> dict | None:
    """The sweep's rule: the one ``sweep.json`` records (a resumed sweep), else fitted on the
    spec's predictor sweep; ``None`` without ``early_stop``."""
    if spec.early_stop is None:
        return None
    recorded = store.stop_rule() if store.exists() else None
    if recorded:
        return recorded
    if not spec.early_stop.predictor:
        raise SpecError("early_stop: needs a predictor sweep (early_stop.predictor, or doodl sweep --predictor SWEEP)")
    if spec.early_stop.predictor == store.sweep_id:
        raise SpecError("early_stop.predictor: must be another, already reduced sweep, not this one")
    return fit_from_sweep(SweepStore(store.store_uri, spec.early_stop.predictor), spec.early_stop,
                          spec.dataset.name)


def fit_from_sweep(predictor: SweepStore, settings: EarlyStopSpec, dataset: str) -> dict:
    """Fit the rule on ``predictor``'s early results and validate it there, groups left out."""
    doc = predictor.read_sweep()  # refuses an unknown sweep with one line
    theirs = doc.get("spec", {}).get("dataset", {}).get("name")
    if theirs != dataset:
        raise SpecError(f"early_stop.predictor: sweep {predictor.sweep_id!r} trains on {theirs!r}, this sweep on "
                        f"{dataset!r}; a predictor needs the same data set")
    groups, runs = (_read(predictor, path) for path in (predictor.layout.reduction_table("early"),
                                                         predictor.layout.reduction_runs_table("early")))
    fractions = next((g["fractions"] for g in groups if g.get("fractions")), [])
    k = next((i for i, f in enumerate(fractions) if abs(f - settings.at) < 1e-9), None)
    if k is None:
        raise SpecError(f"early_stop.at: {settings.at:g} is not among the fractions sweep {predictor.sweep_id!r} "
                        f"was reduced at ({', '.join(f'{f:g}' for f in fractions) or 'none'}); use one of them, "
                        "or set its reduce.early.fractions and reduce it again")
    rows = [r for r in runs if r["status"] == "ok" and r.get("features") and r["final_test_acc"] is not None
            and np.isfinite(r["features"][k]).all()]
    if len({r["group_id"] for r in rows}) < 2:
        raise StoreError(f"sweep {predictor.sweep_id!r} has early results for fewer than 2 groups; a predictor "
                         "is fitted across groups")
    x = np.array([r["features"][k] for r in rows], dtype=np.float64)
    y = np.array([r["final_test_acc"] for r in rows], dtype=np.float64)
    rule = fit_stop_rule(x, y, settings.at, settings.keep, RIDGE_ALPHA)
    return {"rule": rule.to_dict(), "predictor": predictor.sweep_id, "keep": settings.keep, "n_runs": len(rows),
            "n_groups": len({r["group_id"] for r in rows}),
            "validation": validate(rows, x, y, k, settings.keep, rule),
            "phases": phase_model(predictor, rows, x)}


def phase_model(predictor: SweepStore, rows: list[dict], x: np.ndarray) -> dict | None:
    """The nearest-group phase model (plain numbers) from the predictor sweep's taxonomy and
    its runs' early features ``x``, with its held-out accuracy; ``None`` without a taxonomy."""
    try:
        taxonomy = _read(predictor, predictor.layout.reduction_table("taxonomy"), "taxonomy")
    except StoreError:
        return None
    phase = {r["group_id"]: r["phase"] for r in taxonomy if r["error"] is None and r["phase"]}
    group_ids = sorted({r["group_id"] for r in rows} & set(phase))
    if len(group_ids) < 2:
        return None
    groups = np.array([r["group_id"] for r in rows])
    return fit_phase_model(np.stack([x[groups == g].mean(axis=0) for g in group_ids]), [phase[g] for g in group_ids])


def fit_phase_model(means: np.ndarray, labels: list[str]) -> dict:
    """Nearest group by standardised mean early features ``means`` ``(G, F)``, each group's
    phase in ``labels``; with its accuracy leaving each group out of the fit (its scaling
    too), and chance's."""
    model = _nearest(means, labels)
    hits = [predict_phase(_nearest(np.delete(means, i, axis=0), labels[:i] + labels[i + 1:]), means[i : i + 1])
            == labels[i] for i in range(len(labels))]
    model.update(held_out_accuracy=float(np.mean(hits)),
                 chance=max(labels.count(p) for p in set(labels)) / len(labels), n_groups=len(labels))
    return model


def _nearest(means: np.ndarray, labels: list[str]) -> dict:
    centre, spread = means.mean(axis=0), means.std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    return {"mean": centre.tolist(), "scale": scale.tolist(), "points": ((means - centre) / scale).tolist(),
            "labels": list(labels)}


def predict_phase(model: dict, features: np.ndarray) -> str:
    """The phase of the model's group nearest to the mean of ``features`` (a group's runs)."""
    z = (np.asarray(features, dtype=np.float64).mean(axis=0) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    return model["labels"][int(np.argmin(np.linalg.norm(np.asarray(model["points"]) - z, axis=1)))]


def validate(rows: list[dict], x: np.ndarray, y: np.ndarray, k: int, keep: float, rule: StopRule) -> dict:
    """The rule's figures on the predictor sweep with each group left out of its fit (its
    threshold too): the final test accuracy's MAE beside chance's (the other groups' mean) and
    the extrapolated curve's; of the runs it stops, the share that really ended in the bottom
    ``1 - keep`` by final test accuracy (chance: that bottom's share of all runs); of the
    real top 10%, the share it keeps."""
    curve = np.array([r["extrapolated_acc"][k] if r.get("extrapolated_acc") else np.nan for r in rows])
    verdict = accuracy_verdict(rule.at, [r["run_id"] for r in rows], [r["group_id"] for r in rows], x, y,
                               np.nan_to_num(curve, nan=float(np.mean(y))))
    stopped = _held_out_stops(x, y, np.array([r["group_id"] for r in rows]), rule.at, keep)
    bottom = y < np.quantile(y, 1.0 - keep) if keep < 1 else np.zeros(len(y), dtype=bool)
    top = y >= np.quantile(y, 1.0 - TOP)
    return {"mae": verdict.mae, "chance_mae": verdict.chance_mae, "curve_mae": verdict.baseline_mae,
            "stopped": float(stopped.mean()),
            "stopped_in_bottom": float(bottom[stopped].mean()) if stopped.any() else float("nan"),
            "bottom_chance": float(bottom.mean()), "top_kept": float((~stopped[top]).mean())}


def _held_out_stops(x: np.ndarray, y: np.ndarray, groups: np.ndarray, at: float, keep: float) -> np.ndarray:
    """Whether each run is stopped by the rule fitted (threshold included) without its group."""
    out = np.zeros(len(y), dtype=bool)
    for g in set(groups.tolist()):
        mine = groups == g
        out[mine] = fit_stop_rule(x[~mine], y[~mine], at, keep, RIDGE_ALPHA).doomed(x[mine])
    return out


def describe(stop: dict, at: float) -> str:
    """One line for the console: the rule and its held-out figures."""
    v, rule = stop["validation"], stop["rule"]
    return (f"early stop at {at:.0%} of training: runs predicted below {rule['threshold']:.3f} final test accuracy "
            f"stop (ridge fitted on sweep {stop['predictor']!r}, {stop['n_runs']} runs in {stop['n_groups']} groups; "
            f"there with each group held out: MAE {v['mae']:.3f} vs chance {v['chance_mae']:.3f}, it stops "
            f"{v['stopped']:.0%} of runs, {v['stopped_in_bottom']:.0%} of them really in the bottom "
            f"{1 - stop.get('keep', 1 - v['bottom_chance']):.0%} (chance {v['bottom_chance']:.0%}), and keeps {v['top_kept']:.0%} of the top {TOP:.0%})"
            + (f"; a stopped group's phase is its nearest predictor group's (held out there: "
               f"{p['held_out_accuracy']:.2f} vs chance {p['chance']:.2f} over {p['n_groups']} groups)"
               if (p := stop.get("phases")) else ""))


def _read(store: SweepStore, path: str, analysis: str = "early") -> list[dict]:
    try:
        with store.fs.open_input_file(path) as f:
            return pq.read_table(f).to_pylist()
    except FileNotFoundError:
        raise StoreError(f"sweep {store.sweep_id!r} has no {analysis} results; run `doodl reduce {store.sweep_id}` "
                         f"(with the {analysis} analysis) first") from None


def write_stopped_phases(store: SweepStore, groups: dict[str, list[dict]]) -> list[dict]:
    """Predict the phase of each group in ``groups`` (rows of variants.parquet; groups left
    with fewer than 2 finished runs) from all its runs' early features at the rule's step, and
    write ``reduction/stopped_phases.parquet``. Returns its rows."""
    from doodl.analysis.early_outcome import early_features
    from doodl.analysis.early_task import read_early_runs
    from doodl.orchestrator.store.reduction import ReductionStore

    doc = store.stop_rule() or {}
    model, at = doc.get("phases"), doc.get("rule", {}).get("at")
    out = []
    for gid, rows in sorted(groups.items()):
        runs, status = read_early_runs(store.uri, sorted({v["unit_id"] for v in rows}), rows, gid,
                                       statuses=("ok", "stopped"), function_space=False)
        phase = predict_phase(model, np.stack([early_features(r, at) for r in runs])) if model and runs else None
        out.append({"group_id": gid, "n_runs": len(rows), "n_finished": sum(s == "ok" for s in status.values()),
                    "predicted_phase": phase})
    ReductionStore(store.fs, store.root, "early").write_table(STOPPED_PHASES, out, STOPPED_PHASES_SCHEMA)
    return out


def read_stopped_phases(store: SweepStore) -> dict[str, dict]:
    """``reduction/stopped_phases.parquet`` by group id (empty when the sweep has none)."""
    try:
        return {r["group_id"]: r for r in _read(store, store.layout.reduction_table(STOPPED_PHASES))}
    except StoreError:
        return {}
