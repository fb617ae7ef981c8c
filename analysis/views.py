"""What each analysis shows of its results in MLflow: metrics, tags and curves on a group's
run and on each seed's run, and the columns of its all-groups table on the sweep's parent.

Plain functions of a result row (no MLflow here: :mod:`doodl.orchestrator.tracking` logs
what they return). Ids that are not stable between reductions (Morse sets, Koopman
classes) are tags, not metrics. Each is named in its analysis's registry entry
(:mod:`doodl.analysis.registry`).
"""

from __future__ import annotations

# what a view returns: metrics (name -> value; None and non-finite are skipped), tags, and
# curves as (name, step, value)
View = tuple[dict, dict[str, str], list[tuple[str, int, float]]]

MORSE_COLUMNS = (
    "group_id", "label", "n_runs", "coordinates", "no_verdict", "n_outcomes", "outcome_sizes", "n_attractors", "ari",
    "outcome_accuracy", "outcome_chance", "baseline_accuracy", "versus_baseline", "self_basin_accuracy",
    "self_basin_chance", "n_transit", "n_undecided", "n_morse_sets", "n_unresolved", "cm_n_morse_sets",
    "cm_n_attractors", "cm_boundary", "data_n_attractors", "data_agrees", "fidelity", "n_pairs", "total_s",
    "warnings", "error")
TAXONOMY_COLUMNS = (
    "group_id", "label", "phase", "n_seeds", "train_loss", "train_acc", "test_acc", "hessian_top", "hessian_trace",
    "mc", "line_barrier", "cka", "l2", "total_s", "threshold_train_loss", "threshold_mc_tolerance", "threshold_cka",
    "error")
KOOPMAN_COLUMNS = ("group_id", "label", "koopman_class", "n_runs", "n_spectra", "n_pairs", "modulus_1", "modulus_2",
                   "modulus_3", "spread", "seconds", "warnings", "error")
EARLY_COLUMNS = ("group_id", "label", "n_runs", "n_outcomes", "fractions", "outcome_accuracy", "outcome_chance",
                 "outcome_baseline", "final_acc_mae", "final_acc_chance_mae", "final_acc_baseline_mae", "seconds",
                 "error")
NTK_COLUMNS = ("group_id", "label", "n_runs", "n_probe", "transition_step", "transition_steps", "final_distance_init",
               "seconds", "error")

# a group run's taxonomy figures that are end-of-training means over its seeds, named as a
# seed's run names its own end-of-training figures (the curve names are curves' alone)
GROUP_METRIC_NAMES = {"train_loss": "final_train_loss", "test_acc": "final_test_acc"}
TAXONOMY_METRICS = ("train_loss", "test_acc", "hessian_top", "hessian_trace", "mc", "line_mc", "line_barrier", "cka",
                    "l2")


def curve(name: str, steps, values) -> list[tuple[str, int, float]]:
    """A curve's points as a view returns them."""
    return [(name, step, v) for step, v in zip(steps or [], values or [])]


def morse_group(row: dict) -> View:
    # below the minimum of runs the verdict columns are null: no metric, and a tag says why
    tags = {"doodl.morse_coordinates": str(row["coordinates"]),
            "doodl.morse_verdict": row.get("no_verdict") or f"{row.get('versus_baseline')} the baseline"}
    return ({"n_morse_sets": row["n_morse_sets"], "n_attractors": row.get("n_attractors"),
             "n_unresolved_morse_sets": row["n_unresolved"], "n_outcomes": row.get("n_outcomes"),
             "outcome_ari": row.get("ari"), "outcome_accuracy": row.get("outcome_accuracy"),
             "outcome_chance": row.get("outcome_chance"), "outcome_baseline_accuracy": row.get("baseline_accuracy"),
             "self_basin_accuracy": row.get("self_basin_accuracy"), "self_basin_chance": row.get("self_basin_chance"),
             "outcome_undecided": row.get("n_undecided"), "fidelity": row.get("fidelity")}, tags, [])


def morse_seed(run: dict) -> View:
    values = {"final_in_attractor": run.get("in_attractor"), "outcome_correct": run.get("outcome_correct"),
              "outcome_baseline_correct": run.get("baseline_correct")}
    return (values, {"doodl.itinerary": " > ".join(str(u) for u in run.get("itinerary") or []) or "none",
                     "doodl.end_attractor": str(run.get("end_attractor")), "doodl.outcome": str(run.get("outcome"))},
            [])


def taxonomy_group(row: dict) -> View:
    return ({GROUP_METRIC_NAMES.get(k, k): row.get(k) for k in TAXONOMY_METRICS},
            {"doodl.phase": str(row["phase"]), **{f"doodl.{k}": str(row[k]) for k in
             ("threshold_train_loss", "threshold_mc_tolerance", "threshold_cka")}}, [])


def taxonomy_seed(run: dict) -> View:
    return {k: run.get(k) for k in ("hessian_top", "hessian_trace")}, {}, []


def koopman_group(row: dict) -> View:
    tags = {"doodl.koopman_class": str(row["koopman_class"])} if row.get("koopman_class") is not None else {}
    return ({**{f"koopman_modulus_{k}": row.get(f"modulus_{k}") for k in (1, 2, 3)},
             "koopman_spread": row.get("spread")}, tags, [])


def koopman_seed(run: dict) -> View:
    return {"koopman_run_modulus_1": run.get("modulus_1")}, {}, []


def ntk_group_or_seed(result: dict) -> View:
    """A group's mean kernel path and a seed's own: the same names on both runs."""
    return ({"ntk_transition_step": result.get("transition_step")}, {},
            curve("ntk_distance_init", result.get("steps"), result.get("distance_init"))
            + curve("ntk_velocity", result.get("steps"), result.get("velocity")))


def fraction_name(fraction: float) -> str:
    """A fraction in a metric name: 0.1 -> ``f10`` (MLflow names take no dots)."""
    return f"f{round(fraction * 100):02d}"


def early_group(row: dict) -> View:
    """Held-out outcome accuracy beside chance and the curve baseline, and the final test
    accuracy's errors (group left out), one metric per fraction of training."""
    values: dict = {"early_outcome_chance": row.get("outcome_chance"), "early_n_outcomes": row.get("n_outcomes")}
    columns = ("outcome_accuracy", "outcome_baseline", "final_acc_mae", "final_acc_chance_mae",
               "final_acc_baseline_mae")
    for k, f in enumerate(row.get("fractions") or []):
        for c in columns:
            series = row.get(c) or []
            values[f"early_{c}_{fraction_name(f)}"] = series[k] if k < len(series) else None
    return values, {}, []


def early_seed(run: dict) -> View:
    """The run's outcome mode and, per fraction, the one predicted for it (held out)."""
    return ({}, {"doodl.early_outcome": str(run.get("outcome")),
                 "doodl.early_predicted_outcomes": " ".join(str(p) for p in run.get("predicted_outcome") or [])},
            [])
