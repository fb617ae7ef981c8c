"""One group's Morse analysis from a sweep's store, as a Ray task (plain data in and out).

:func:`morse_for_group` reads the group's committed snapshots and finals, adds the models'
outputs on a fixed probe set when the snapshots hold full parameters (function-space
coordinates, and the runs' outcomes), runs :func:`doodl.analysis.dynamics.group_morse`,
cross-checks the graph with pychomp (the connection matrix of the same map on the uniform
grid of ``subdiv_min``, and the Morse decomposition of the snapshot pairs alone), and draws
the pictures. A group below :data:`doodl.analysis.dynamics.MIN_RUNS` non-diverged runs gets its
graph drawn and stored, but no attractor count, basin or accuracy: those columns are null
and ``no_verdict`` says why (``docs/methods.md``, "How many runs").
"""

from __future__ import annotations

import time

import numpy as np

from doodl.analysis._connection import connection_matrix, data_images, grid_images, set_of_points
from doodl.analysis.dynamics import GroupMorse, MorseSettings, RunTrajectory, group_morse
from doodl.analysis.registry import error_runs, task_error

PROBE_POINTS = 200  # held-out points the function-space coordinates are the outputs on
PROBE_SEED = 0


def read_group_runs(sweep_root_uri: str, unit_ids: list[str], variants: list[dict], *,
                    function_space: bool = False) -> list[RunTrajectory]:
    """The snapshots of the group's runs (``variants``: their rows of variants.parquet),
    read from their units' committed shards; with ``function_space``, each run also gets
    its model's softmax outputs on the sweep's probe set at every snapshot.

    Only the snapshot rows are read; a run's status (``ok``/``diverged``/``stopped``) and its final
    train loss and accuracy come from its finals row; a run with non-finite snapshots
    counts as diverged.
    """
    import pyarrow.compute as pc

    from doodl.workers import shards
    from doodl.workers.config import VariantConfig

    run_ids = [v["run_id"] for v in variants]
    fs, root = shards.resolve_filesystem(sweep_root_uri)
    wanted = pc.field("run_id").isin(run_ids)
    table = shards.read_snapshots(fs, root, unit_ids, ["run_id", "step", "theta"], filter=wanted
                                  ).sort_by([("run_id", "ascending"), ("step", "ascending")])
    finals = shards.read_units(fs, root, shards.FINALS, unit_ids,
                               ["run_id", "status", "final_train_loss", "final_train_acc"], filter=wanted).to_pylist()
    final = {f["run_id"]: f for f in finals}
    rid_col = table.column("run_id").to_numpy(zero_copy_only=False)
    steps = table.column("step").to_numpy()
    theta = table.column("theta").combine_chunks()
    n = len(theta)
    flat = theta.flatten().to_numpy(zero_copy_only=False) if n else np.empty(0, dtype=np.float32)
    theta_np = flat.reshape(n, len(flat) // n) if n else np.empty((0, 0), dtype=np.float32)
    probe = None
    if function_space and variants:
        from doodl.analysis._function_space import probe_inputs

        probe = probe_inputs(variants[0], PROBE_POINTS, PROBE_SEED)
    out = []
    for v in variants:
        rid = v["run_id"]
        idx = np.flatnonzero(rid_col == rid)
        th = theta_np[idx]
        finite = np.isfinite(th).all(axis=1)
        f = final.get(rid, {})
        # a run stopped early keeps its status: its trajectory ends at the rule's step
        run_status = f.get("status") if f.get("status") in ("diverged", "stopped") else \
            "diverged" if not finite.all() else "ok"
        outputs = None
        if probe is not None and run_status == "ok":
            from doodl.analysis._function_space import output_features

            outputs = output_features(v, th.astype(np.float64), probe)
        out.append(RunTrajectory(rid, steps[idx][finite], th[finite], run_status, outputs,
                                 VariantConfig.from_dict(v).optimizer_memory,
                                 final_loss=f.get("final_train_loss"), final_acc=f.get("final_train_acc")))
    return out


CM_MAX_PER_AXIS = 64  # the connection matrix's uniform grid: at most this many cells per axis (cost grows as n^d)


def cross_check(result: GroupMorse, runs: list[RunTrajectory], settings: MorseSettings) -> dict:
    """pychomp on the uniform grid of ``subdiv_min`` (at most ``CM_MAX_PER_AXIS`` per axis):
    the connection matrix of the same pair map, and the Morse decomposition of the snapshot
    pairs alone (a cell maps only where its own pairs go); whether the data's attractors fall
    in distinct attractors of CMGDB's graph."""
    g, fitted = result.graph, result.fitted
    d = g.dim
    n = min(2 ** max(1, settings.subdiv_min // d), CM_MAX_PER_AXIS)
    images, leaves = grid_images(fitted.pair_map, g.lower, g.upper, n)
    cm = connection_matrix(images, n, d, leaves)
    pm = fitted.pair_map
    data = connection_matrix(data_images(pm.x, pm.y, g.lower, g.upper, n), n, d)
    # each data attractor, by the snapshots inside it, must lie in one CMGDB basin, a different one each
    pts = np.concatenate(list(fitted.projected.values()))
    in_set = set_of_points(data, pts, g.lower, g.upper, n)
    basins = []
    for a in data.attractors:
        b = set(g.basin_of(pts[in_set == a]).tolist())
        basins.append(b.pop() if len(b) == 1 else -9)
    agrees = (len(data.attractors) == len(g.attractors) and all(b >= 0 for b in basins)
              and len(set(basins)) == len(basins))
    return {
        "cm_grid": n,
        "cm_conley_ranks": cm.conley_ranks,
        "cm_order": [list(e) for e in cm.order],
        "cm_boundary": [list(e) for e in cm.boundary],
        "cm_n_morse_sets": len(cm.nontrivial),
        "cm_n_attractors": len(cm.attractors),
        "cm_s": cm.seconds,
        "data_n_attractors": len(data.attractors),
        "data_agrees": bool(agrees),
        "_cm": cm,
    }


# columns that read as a verdict on basins: null below the minimum number of runs
VERDICT_COLUMNS = ("n_attractors", "n_outcomes", "outcome_sizes", "ari", "outcome_accuracy", "outcome_chance",
                   "baseline_accuracy", "versus_baseline", "self_basin_accuracy", "self_basin_accuracy_start",
                   "self_basin_chance", "n_transit", "n_undecided", "fidelity", "data_agrees")


def morse_for_group(sweep_root_uri: str, group_id: str, unit_ids: list[str], variants: list[dict],
                    settings: dict, title: str = "") -> dict:
    """Run :func:`group_morse` on one group of a sweep and draw its pictures.

    Returns plain data (safe to return from a Ray task): a ``row`` for the group table,
    ``runs`` (one verdict per run), and ``pictures`` (file name -> bytes). Errors are
    reported in ``row["error"]`` rather than raised, so one group cannot stop the others.
    """
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    cfg = MorseSettings(**settings)
    run_ids = [v["run_id"] for v in variants]
    row: dict = {"group_id": group_id, "n_runs": len(run_ids), "error": None, "run_ids": run_ids,
                 **{f"param_{k}": v for k, v in cfg.model_dump().items()}}
    try:
        projected = any(v.get("projection_dim") for v in variants)
        if cfg.coordinates == "function" and projected:
            raise ValueError("coordinates 'function' need full parameter snapshots; this sweep recorded a random "
                             "projection (record.projection): use late_pca")
        runs = read_group_runs(sweep_root_uri, unit_ids, variants, function_space=not projected)
        result = group_morse(runs, cfg)
        check = cross_check(result, runs, cfg)
    except Exception as exc:  # reported per group; the reduction goes on
        row["error"] = task_error(exc)
        row["seconds"] = time.perf_counter() - started
        return {"row": row, "runs": error_runs(group_id, run_ids),
                "pictures": {}}
    warnings = list(result.warnings)
    n_diverged = sum(1 for v in result.verdicts if v.status == "diverged")
    if n_diverged:
        warnings.append(f"{n_diverged} diverged run(s) left out of the coordinates, the map and the box")
    if result.enough_runs and not check["data_agrees"]:
        warnings.append(f"the snapshot pairs alone (pychomp, {check['cm_grid']} cells per axis) give "
                        f"{check['data_n_attractors']} attractor(s), not in one basin each of this graph's "
                        f"{len(result.graph.attractors)}")
    g = result.graph
    cm = check.pop("_cm")
    o = result.outcomes
    row.update(
        coordinates=result.coordinates,
        n_morse_sets=len(g.nodes),
        n_attractors=len(g.attractors),
        n_unresolved=len(g.unresolved),
        n_nontrivial=len(g.nodes) - len(g.unresolved),
        n_outcomes=o.n_modes,
        outcome_sizes=o.sizes,
        outcome_features=o.features,
        ari=result.ari,
        outcome_accuracy=result.outcome_accuracy,
        outcome_chance=result.outcome_chance,
        baseline_accuracy=result.baseline_accuracy,
        versus_baseline=result.versus_baseline,
        self_basin_accuracy=result.self_basin_accuracy,
        self_basin_accuracy_start=result.self_basin_accuracy_start,
        self_basin_chance=result.self_basin_chance,
        n_transit=result.n_transit,
        n_undecided=result.n_undecided,
        fidelity=result.fidelity,
        explained_variance=result.fitted.coordinates.explained_variance_ratio.tolist(),
        n_pairs=result.n_pairs,
        dot=g.to_dot(verdict=result.enough_runs),
        warnings=warnings,
        **g.to_record(),
        **check,
        **result.timings,
    )
    runs_out = [{**_run_row(v), "group_id": group_id} for v in result.verdicts]
    row.update(final_nodes=[v.final_node for v in result.verdicts],
               end_attractors=[v.end_attractor for v in result.verdicts])
    if not result.enough_runs:
        row["no_verdict"] = result.no_verdict
        row.update({k: None for k in VERDICT_COLUMNS})
        row["attractors"] = []
        for r in runs_out:
            r.update({k: None for k in _RUN_VERDICT_COLUMNS})
    pictures = _pictures(result, cm, row, title or group_id)
    row["seconds"] = time.perf_counter() - started
    return {"row": row, "runs": runs_out, "pictures": pictures}


_RUN_VERDICT_COLUMNS = ("end_attractor", "in_attractor", "outcome", "predicted_outcome", "outcome_correct",
                        "baseline_outcome", "baseline_correct", "predicted_attractor", "self_basin_correct",
                        "self_basin_correct_start")


def _run_row(v) -> dict:
    ok = v.status == "ok"
    return {"run_id": v.run_id, "status": v.status, "final_point": v.final_point, "final_node": v.final_node,
            "end_attractor": v.end_attractor, "in_attractor": v.in_attractor, "itinerary": v.itinerary,
            "outcome": v.outcome if ok else None,
            "predicted_outcome": v.predicted_outcome if ok else None,
            "outcome_correct": v.outcome_correct if ok else None,
            "baseline_outcome": v.baseline_outcome if ok else None,
            "baseline_correct": v.baseline_correct if ok else None,
            "predicted_attractor": v.predicted_early if ok else None,
            "self_basin_correct": v.heldout_correct if ok else None,
            "self_basin_correct_start": v.heldout_start_correct if ok else None,
            "fold": v.fold}


def _pictures(result: GroupMorse, cm, row: dict, title: str) -> dict[str, bytes]:
    """The Morse graph (PNG, drawn with matplotlib; DOT text as an export), the Morse sets
    over the trajectories, and the connection matrix."""
    from doodl.analysis.figures import png
    from doodl.analysis.morse import plot_morse_sets, render_graph

    g = result.graph
    verdict = picture_verdict(row)
    judged = not row.get("no_verdict")  # below the minimum of runs no set is drawn as an attractor
    pics = {"morse_graph.dot": g.to_dot(verdict=judged).encode(),
            "morse_graph.png": render_graph(g, title=f"{title}\n{verdict}", verdict=judged)}
    fig = plot_morse_sets(g, list(result.projected.values()), title=f"{title}\n{verdict}; {result.coordinates}",
                          axis_labels=result.fitted.coordinates.axis_labels, verdict=judged)
    pics["morse_sets.png"] = png(fig)
    pics["connection_matrix.png"] = png(_plot_connection_matrix(cm, title))
    return pics


def picture_verdict(row: dict) -> str:
    """The line a group's pictures carry under their title: what the graph claims, or why
    it claims nothing."""
    if row.get("no_verdict"):
        return f"{row['n_runs']} runs: too few for a verdict"
    return (f"held-out outcome accuracy {row['outcome_accuracy']:.2f} (chance {row['outcome_chance']:.2f}, "
            f"baseline {row['baseline_accuracy']:.2f}: {row['versus_baseline']}); "
            f"{row['n_attractors']} attractor(s) for {row['n_outcomes']} outcome(s), ARI {row['ari']:.2f}")


def _plot_connection_matrix(cm, title: str):
    """The connection matrix between the non-trivial Morse sets: a mark where a generator
    of the row's set bounds one of the column's (a connecting orbit that must exist)."""
    from doodl.analysis.figures import pyplot

    plt = pyplot()

    sets = cm.nontrivial
    pos = {m: k for k, m in enumerate(sets)}
    mat = np.zeros((len(sets), len(sets)))
    for a, b, _ in cm.boundary:
        if a in pos and b in pos:
            mat[pos[a], pos[b]] += 1
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * max(len(sets), 2), 1.2 + 0.45 * max(len(sets), 2)), dpi=110)
    if not sets:
        ax.text(0.5, 0.5, "no non-trivial Morse set on this grid", ha="center", va="center", fontsize=8)
        ax.axis("off")
        ax.set_title(f"connection matrix ({cm.n_per_axis}^{cm.dim} grid)\n{title}", fontsize=8)
        return fig
    ax.imshow((mat > 0).astype(float), cmap="Greys", vmin=0, vmax=1.5)
    labels = [f"{m}: {tuple(cm.conley_ranks[m])}" for m in sets]
    ax.set_xticks(range(len(sets)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(sets)), labels, fontsize=7)
    ax.set_xlabel("to Morse set (Conley ranks)")
    ax.set_ylabel("from Morse set")
    ax.set_title(f"connection matrix ({cm.n_per_axis}^{cm.dim} grid)\n{title}", fontsize=8)
    return fig

