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
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from doodl.analysis.early_outcome import RIDGE_ALPHA, accuracy_verdict
from doodl.orchestrator.spec import EarlyStopSpec, SpecError, SweepSpec
from doodl.orchestrator.store import StoreError, SweepStore
from doodl.workers.early_stop import StopRule, fit_stop_rule

TOP = 0.1  # the share of best runs whose recovery the validation reports


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
    return {"rule": rule.to_dict(), "predictor": predictor.sweep_id, "n_runs": len(rows),
            "n_groups": len({r["group_id"] for r in rows}),
            "validation": validate(rows, x, y, k, settings.keep, rule)}


def validate(rows: list[dict], x: np.ndarray, y: np.ndarray, k: int, keep: float, rule: StopRule) -> dict:
    """The rule's figures on the predictor sweep with each group left out of its fit: the
    final test accuracy's MAE beside chance's (the other groups' mean) and the extrapolated
    curve's; of the runs the held-out rule stops, the share that really ended in the bottom
    ``1 - keep`` (chance: ``1 - keep``); of the real top 10%, the share it keeps."""
    curve = np.array([r["extrapolated_acc"][k] if r.get("extrapolated_acc") else np.nan for r in rows])
    verdict = accuracy_verdict(rule.at, [r["run_id"] for r in rows], [r["group_id"] for r in rows], x, y,
                               np.nan_to_num(curve, nan=float(np.mean(y))))
    held_out = np.array([verdict.predicted[r["run_id"]] for r in rows])
    stopped = held_out < rule.threshold
    bottom = y < np.quantile(y, 1.0 - keep) if keep < 1 else np.zeros(len(y), dtype=bool)
    top = y >= np.quantile(y, 1.0 - TOP)
    return {"mae": verdict.mae, "chance_mae": verdict.chance_mae, "curve_mae": verdict.baseline_mae,
            "stopped": float(stopped.mean()),
            "stopped_in_bottom": float(bottom[stopped].mean()) if stopped.any() else float("nan"),
            "bottom_chance": 1.0 - keep, "top_kept": float((~stopped[top]).mean())}


def describe(stop: dict, at: float) -> str:
    """One line for the console: the rule and its held-out figures."""
    v, rule = stop["validation"], stop["rule"]
    return (f"early stop at {at:.0%} of training: runs predicted below {rule['threshold']:.3f} final test accuracy "
            f"stop (ridge fitted on sweep {stop['predictor']!r}, {stop['n_runs']} runs in {stop['n_groups']} groups; "
            f"there with each group held out: MAE {v['mae']:.3f} vs chance {v['chance_mae']:.3f}, it stops "
            f"{v['stopped']:.0%} of runs, {v['stopped_in_bottom']:.0%} of them really in the bottom "
            f"{v['bottom_chance']:.0%} (chance), and keeps {v['top_kept']:.0%} of the top {TOP:.0%})")


def _read(store: SweepStore, path: str) -> list[dict]:
    try:
        with store.fs.open_input_file(path) as f:
            return pq.read_table(f).to_pylist()
    except FileNotFoundError:
        raise StoreError(f"sweep {store.sweep_id!r} has no early results; run `doodl reduce {store.sweep_id}` "
                         "(with the early analysis) first") from None
