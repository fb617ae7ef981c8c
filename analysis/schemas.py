"""The tables each analysis writes to ``SWEEP/reduction``: a row per group and a row per
run, plus Koopman's pairs of groups. Declared here, beside the analyses that fill them, and
named by each analysis's registry entry (:mod:`doodl.analysis.registry`); the store
(:mod:`doodl.orchestrator.store`) writes and reads them. pyarrow only."""

from __future__ import annotations

import pyarrow as pa

_I32, _LI32, _LLI32 = pa.int32(), pa.list_(pa.int32()), pa.list_(pa.list_(pa.int32()))

MORSE_GROUP_SCHEMA = pa.schema([
    ("group_id", pa.string()),
    ("settings_key", pa.string()),  # the settings it was computed with: a change means "redo"
    ("n_runs", _I32),
    ("error", pa.string()),
    ("coordinates", pa.string()),  # the coordinates used (``auto`` resolved)
    ("n_morse_sets", _I32),
    ("no_verdict", pa.string()),  # why the columns of a verdict on basins are null (too few runs); null: they are not
    ("n_attractors", _I32),  # sinks with a non-trivial Conley index
    ("n_unresolved", _I32),  # Morse sets with a trivial or undefined index
    ("n_nontrivial", _I32),
    # validity against outcomes defined without the graph (clusters of the runs' end states)
    ("n_outcomes", _I32),  # outcome modes of the group's runs
    ("outcome_sizes", _LI32),  # runs per mode, largest first
    ("outcome_features", pa.string()),  # what the modes cluster: function (outputs, accuracy, loss) or state
    ("ari", pa.float64()),  # adjusted Rand index, end basins vs outcome modes
    ("outcome_accuracy", pa.float64()),  # held out: the early state's basin (fold graph) stands for the right outcome
    ("outcome_chance", pa.float64()),  # share of runs in the largest outcome mode
    ("baseline_accuracy", pa.float64()),  # same folds: outcome of the nearest training run's early state
    ("versus_baseline", pa.string()),  # beats / matches (within one run) / below
    # secondary: graded against the graph's own attractors (cannot notice a graph that merges outcomes)
    ("self_basin_accuracy", pa.float64()),
    ("self_basin_accuracy_start", pa.float64()),  # the same from the first snapshot
    ("self_basin_chance", pa.float64()),  # share of runs in the largest basin
    ("n_transit", _I32),  # runs whose end lies in no basin of the graph fitted without them
    ("n_undecided", _I32),  # runs whose early state predicts no outcome (separatrix, no basin, empty basin)
    ("fidelity", pa.float64()),  # in sample (secondary): runs whose final point lies in an attractor
    ("nodes", _LI32),
    ("edges", _LLI32),
    ("attractors", _LI32),
    ("unresolved", _LI32),
    ("conley_strings", pa.list_(pa.list_(pa.string()))),
    ("conley_ranks", _LLI32),
    ("n_boxes", _LI32),
    ("boxes", pa.list_(pa.list_(pa.float64()))),  # per node: its boxes' bounds, flattened
    ("lower", pa.list_(pa.float64())),
    ("upper", pa.list_(pa.float64())),
    ("explained_variance", pa.list_(pa.float64())),
    ("n_pairs", _I32),
    ("dot", pa.string()),
    ("warnings", pa.list_(pa.string())),
    # pychomp on the uniform grid of subdiv_min (at most 64 per axis): connection matrix of the same map ...
    ("cm_grid", _I32),  # cells per axis
    ("cm_conley_ranks", _LLI32),  # per Morse set of the grid's decomposition
    ("cm_order", _LLI32),  # (from, to): Hasse diagram of the sets' order
    ("cm_boundary", _LLI32),  # (from set, to set, dimension): connecting orbits that must exist
    ("cm_n_morse_sets", _I32),  # non-trivial sets
    ("cm_n_attractors", _I32),
    ("cm_s", pa.float64()),
    # ... and the map of the snapshot pairs alone
    ("data_n_attractors", _I32),
    ("data_agrees", pa.bool_()),  # as many attractors as CMGDB's, each in a basin of its own
    ("run_ids", pa.list_(pa.string())),
    ("final_nodes", _LI32),
    ("end_attractors", _LI32),
    ("fit_s", pa.float64()),
    ("morse_s", pa.float64()),
    ("validate_s", pa.float64()),
    ("total_s", pa.float64()),
    ("seconds", pa.float64()),
    ("param_coordinates", pa.string()),
    ("param_dims", _I32),
    ("param_tau", _I32),
    ("param_late_from", pa.float64()),
    ("param_subdiv_min", _I32),
    ("param_subdiv_max", _I32),
    ("param_padding", pa.float64()),
    ("param_compose", _I32),
    ("param_folds", _I32),
])

MORSE_RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("group_id", pa.string()),
    ("status", pa.string()),  # ok | diverged | error (the group's reduction failed)
    ("final_point", pa.list_(pa.float64())),
    ("final_node", _I32),  # -1: the final point lies in no Morse set
    ("end_attractor", _I32),  # the attractor whose basin holds the final point; < 0: in transit
    ("in_attractor", pa.bool_()),
    ("itinerary", _LI32),  # the Morse sets its snapshots pass through, in order
    ("outcome", _I32),  # its outcome mode (its end state clustered with the group's; not from the graph)
    ("predicted_outcome", _I32),  # held out: the outcome its early state's basin stands for; < 0: undecided
    ("outcome_correct", pa.bool_()),
    ("baseline_outcome", _I32),  # held out: the outcome of the nearest training run's early state
    ("baseline_correct", pa.bool_()),
    ("predicted_attractor", _I32),  # held out: where its early state leads, in this graph's ids; < 0: undecided
    ("self_basin_correct", pa.bool_()),  # held out: early state in the basin of its end's attractor
    ("self_basin_correct_start", pa.bool_()),
    ("fold", _I32),
])


_THRESHOLDS = [("threshold_train_loss", pa.float64()), ("threshold_mc_tolerance", pa.float64()),
               ("threshold_cka", pa.float64())]
_F64, _LF64 = pa.float64(), pa.list_(pa.float64())

TAXONOMY_GROUP_SCHEMA = pa.schema([
    ("group_id", pa.string()),
    ("settings_key", pa.string()),
    ("error", pa.string()),
    ("phase", pa.string()),
    ("n_seeds", pa.int32()),
    *[(k, _F64) for k in ("train_loss", "train_acc", "test_acc", "hessian_top", "hessian_trace", "mc", "line_mc",
                          "line_barrier", "cka", "l2")],
    ("run_ids", pa.list_(pa.string())),
    *[(k, _LF64) for k in ("train_loss_seeds", "test_acc_seeds", "hessian_top_seeds", "hessian_trace_seeds",
                           "mc_pairs", "cka_pairs", "l2_pairs")],
    ("hessian_iters_seeds", pa.list_(pa.int32())),
    ("trace_samples_seeds", pa.list_(pa.int32())),
    ("curve_errors", pa.list_(_LF64)),  # per pair: training error (%) at t = 0, .25, .5, .75, 1
    ("line_errors", pa.list_(_LF64)),
    *[(k, _F64) for k in ("hessian_s", "mc_s", "cka_s", "total_s", "seconds")],
    *_THRESHOLDS,
    *[(f"param_{k}", pa.int64()) for k in ("hessian_batch", "power_iters", "trace_samples", "curve_steps",
                                           "curve_batch", "mc_pairs", "cka_probe", "seed")],
    *[(f"param_{k}", _F64) for k in ("power_tol", "trace_tol", "curve_lr", "curve_momentum")],
])

TAXONOMY_RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("group_id", pa.string()),
    ("status", pa.string()),
    ("train_loss", _F64),
    ("test_acc", _F64),
    ("hessian_top", _F64),
    ("hessian_trace", _F64),
])

KOOPMAN_GROUP_SCHEMA = pa.schema([
    ("group_id", pa.string()),
    ("settings_key", pa.string()),
    ("error", pa.string()),
    ("n_runs", _I32),
    ("n_spectra", _I32),  # runs with a spectrum of their own (enough snapshot pairs)
    ("n_pairs", _I32),  # snapshot pairs stacked for the group's spectrum
    ("eig_real", _LF64),  # the group's Koopman eigenvalues (all its runs stacked), largest modulus first
    ("eig_imag", _LF64),
    ("modulus_1", _F64),
    ("modulus_2", _F64),
    ("modulus_3", _F64),
    ("spread", _F64),  # mean Wasserstein distance between two seeds' spectra
    ("koopman_class", _I32),  # dynamical equivalence class: set across the sweep in koopman.parquet
    ("warnings", pa.list_(pa.string())),
    ("run_ids", pa.list_(pa.string())),
    ("seconds", _F64),
    ("param_delays", _I32),
    ("param_rank", _I32),
    ("param_snapshots", pa.string()),
    ("param_early_fraction", _F64),
    ("param_seed", pa.int64()),
])

KOOPMAN_RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("group_id", pa.string()),
    ("status", pa.string()),
    ("eig_real", _LF64),  # the run's own spectrum (null: too few snapshot pairs, or diverged)
    ("eig_imag", _LF64),
    ("modulus_1", _F64),
])

# the numbers behind each verdict of conjugacy, one row per ordered pair of groups
KOOPMAN_PAIRS_SCHEMA = pa.schema([
    ("group_a", pa.string()),
    ("group_b", pa.string()),
    ("distance", _F64),  # mean distance between a seed of a and a seed of b
    ("spread_a", _F64),
    ("spread_b", _F64),
    ("ratio", _F64),  # distance / max(spread_a, spread_b)
    ("conjugate", pa.bool_()),  # ratio <= 1
])

NTK_GROUP_SCHEMA = pa.schema([
    ("group_id", pa.string()),
    ("settings_key", pa.string()),
    ("error", pa.string()),
    ("n_runs", _I32),
    ("n_probe", _I32),
    ("steps", pa.list_(pa.int64())),  # recorded steps every seed has a kernel at
    ("distance_init", _LF64),  # mean over seeds, per step
    ("distance_final", _LF64),
    ("velocity", _LF64),
    ("transition_step", pa.int64()),  # median over seeds
    ("transition_steps", pa.list_(pa.int64())),
    ("final_distance_init", _F64),
    ("run_ids", pa.list_(pa.string())),
    ("seconds", _F64),
    ("param_probe", _I32),
    ("param_max_kernels", _I32),
    ("param_seed", pa.int64()),
])

NTK_RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("group_id", pa.string()),
    ("status", pa.string()),
    ("steps", pa.list_(pa.int64())),
    ("distance_init", _LF64),
    ("distance_final", _LF64),
    ("velocity", _LF64),  # first entry null: no earlier kernel
    ("transition_step", pa.int64()),
])

EARLY_GROUP_SCHEMA = pa.schema([
    ("group_id", pa.string()),
    ("settings_key", pa.string()),
    ("error", pa.string()),
    ("n_runs", _I32),
    ("run_ids", pa.list_(pa.string())),
    ("n_outcomes", _I32),  # outcome modes of the group's runs (clusters of their end states)
    ("outcome_sizes", pa.list_(pa.int64())),
    ("fractions", _LF64),  # of training: the values below are one per fraction
    ("outcome_accuracy", _LF64),  # held out (leave one run out), from the early state
    ("outcome_chance", _F64),  # the largest mode's share
    ("outcome_baseline", _LF64),  # the same classifier on the loss curve alone
    # final test accuracy predicted with the group left out (the sweep step): mean absolute error
    ("final_acc_mae", _LF64),
    ("final_acc_chance_mae", _LF64),  # predicting the other groups' mean
    ("final_acc_baseline_mae", _LF64),  # the held-out accuracy curve extrapolated (a power law)
    ("seconds", _F64),
    ("param_fractions", _LF64),
])

EARLY_RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("group_id", pa.string()),
    ("status", pa.string()),
    ("outcome", _I32),  # its outcome mode in its group
    ("predicted_outcome", _LI32),  # per fraction, held out
    ("final_test_acc", _F64),
    ("features", pa.list_(_LF64)),  # per fraction: doodl.analysis.early_outcome.early_features
    ("extrapolated_acc", _LF64),  # per fraction: the curve-only baseline's final test accuracy
])

# reduction/early_predictions.parquet (the sweep step): each run's final test accuracy
# predicted at each fraction with its group left out, beside the real one and the baseline's
EARLY_PREDICTIONS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("group_id", pa.string()),
    ("fraction", _F64),
    ("final_test_acc", _F64),
    ("predicted_final_acc", _F64),
    ("extrapolated_acc", _F64),
])
