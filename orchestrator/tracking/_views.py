"""What each kind of run shows in MLflow: a variant's curves, params and name; each
analysis's metrics and tags on a group run and on a seed's run; the all-groups tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from doodl.workers.config import axes

# per curve: enough to compare runs in the UI (every step is in the store); MLflow writes a
# row per point and logging time grows with them (about 0.1 ms a point with SQLite here)
CURVE_POINTS = 25
CURVES = ("train_loss", "train_acc", "grad_norm", "lr")
HELD_OUT_CURVES = ("test_loss", "test_acc")  # measured at recorded steps only
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
# a group run's taxonomy figures that are end-of-training means over its seeds, named as a
# seed's run names its own end-of-training figures (the curve names are curves' alone)
GROUP_METRIC_NAMES = {"train_loss": "final_train_loss", "test_acc": "final_test_acc"}
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


def param_text(value) -> str:
    """A param's one text form, the same on every run type: an integral float without its
    ``.0`` (``0.0`` is ``'0'``, as run names say), other floats as Python writes them
    (``0.05``, ``1e-05``), booleans ``true``/``false``. Search with it:
    ``params.label_noise = '0'`` and ``params.lr = '0.05'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def varying_axes(configs: Iterable[Mapping]) -> list[str]:
    """The grid axes that take more than one value among ``configs``, in grid order."""
    values: dict[str, set] = {name: set() for name in axes()}
    for cfg in configs:
        for name in values:
            values[name].add(cfg.get(name))
    return [name for name, seen in values.items() if len(seen) > 1]


def _labelled(cfg: Mapping, varying: list[str], sep: str) -> list[str]:
    return [f"{axes()[name].metadata['label']}{sep}{param_text(cfg[name])}" for name in varying]


def run_name(cfg: Mapping, varying: list[str]) -> str:
    """A variant's run name: the axes that vary in the sweep (what tells runs apart; the
    rest are params), then the seed; the id keeps names of equal configs apart."""
    return "-".join([*_labelled(cfg, varying, ""), f"s{cfg['seed']}", cfg["run_id"][:6]])


def group_name(cfg: Mapping, varying: list[str]) -> str:
    """A group's readable name: the values of the axes that vary in the sweep."""
    return ", ".join(_labelled(cfg, varying, " ")) or "the sweep's only group"


def group_run_name(cfg: Mapping, varying: list[str]) -> str:
    """A group's run name: ``group`` and its :func:`group_name`."""
    return f"group {group_name(cfg, varying)}"


def metrics_of(values: dict, curves: list[tuple[str, int, float]], now: int) -> list:
    from mlflow.entities import Metric

    out = [Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and np.isfinite(float(v))]
    return out + [Metric(k, float(v), now, int(step)) for k, step, v in curves if v is not None and np.isfinite(v)]


def _curves(name: str, steps, values) -> list[tuple[str, int, float]]:
    return [(name, step, v) for step, v in zip(steps or [], values or [])]


def group_results(name: str, row: dict) -> tuple[dict, dict[str, str], list]:
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
        return ({GROUP_METRIC_NAMES.get(k, k): row.get(k) for k in TAXONOMY_METRICS},
                {"doodl.phase": str(row["phase"]), **{f"doodl.{k}": str(row[k]) for k in
                 ("threshold_train_loss", "threshold_mc_tolerance", "threshold_cka")}}, [])
    if name == "koopman":
        tags = {"doodl.koopman_class": str(row["koopman_class"])} if row.get("koopman_class") is not None else {}
        return ({**{f"koopman_modulus_{k}": row.get(f"modulus_{k}") for k in (1, 2, 3)},
                 "koopman_spread": row.get("spread")}, tags, [])
    return ({"ntk_transition_step": row.get("transition_step")}, {},
            _curves("ntk_distance_init", row.get("steps"), row.get("distance_init"))
            + _curves("ntk_velocity", row.get("steps"), row.get("velocity")))


def seed_results(name: str, run: dict) -> tuple[dict, dict[str, str], list]:
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
